"""Hardware profiles: every shipped YAML loads; malformed ones fail with the file and the key."""
from pathlib import Path

import pytest
import yaml

from spiketrack.errors import UserError
from spiketrack.profiler.energy import MODEL_FIGURES
from spiketrack.profiler.profiles import load_profile

PROFILE_DIR = Path(__file__).resolve().parents[1] / "hw_profiles"
SHIPPED = sorted(PROFILE_DIR.glob("*.yaml"))

GOOD = {
    "name": "x",
    "description": "test chip",
    "energy": {"e_ac": {"value": 0.9, "unit": "pJ", "source": "test"}},
}


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def with_ac(**figure) -> dict:
    return {**GOOD, "energy": {"e_ac": figure}}


def test_all_four_profiles_are_shipped():
    assert {p.stem for p in SHIPPED} >= {"cmos45nm", "loihi", "loihi2", "custom_template"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_loads_with_sources(path):
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.figures
    assert all(f.source for f in profile.figures.values())


def test_shipped_profiles_support_their_models():
    assert not load_profile(PROFILE_DIR / "cmos45nm.yaml").missing(MODEL_FIGURES["paper"] + MODEL_FIGURES["memory_aware"])
    for name in ("loihi", "loihi2"):
        assert not load_profile(PROFILE_DIR / f"{name}.yaml").missing(MODEL_FIGURES["neuromorphic"])
    template = load_profile(PROFILE_DIR / "custom_template.yaml")
    assert not template.missing(sum(MODEL_FIGURES.values(), ()))


def test_published_figures_and_unit_conversion():
    cmos = load_profile(PROFILE_DIR / "cmos45nm.yaml")
    assert cmos.si("energy.e_mac") == pytest.approx(4.6e-12)
    assert cmos.si("energy.e_ac") == pytest.approx(0.9e-12)
    assert cmos.si("reference.int8_add") == pytest.approx(0.03e-12)
    assert cmos.si("reference.int8_mult") == pytest.approx(0.2e-12)
    assert [cmos.si(f"reference.sram_{s}_64bit") for s in ("8kb", "32kb", "1mb")] == pytest.approx([10e-12, 20e-12, 100e-12])
    loihi = load_profile(PROFILE_DIR / "loihi.yaml")
    assert loihi.si("energy.e_synop") == pytest.approx(23.6e-12)
    assert loihi.si("power.static_power") == pytest.approx(0.104)
    assert loihi.si("reference.synaptic_memory_per_core") == 128 * 1024 * 8
    loihi2 = load_profile(PROFILE_DIR / "loihi2.yaml")
    assert all(loihi2.figures[k].estimate for k in MODEL_FIGURES["neuromorphic"])


def test_good_minimal_profile(tmp_path):
    profile = load_profile(write(tmp_path, GOOD))
    assert profile.si("energy.e_ac") == pytest.approx(0.9e-12)
    assert profile.missing(("energy.e_ac", "energy.e_mac")) == ["energy.e_mac"]


@pytest.mark.parametrize("doc, message", [
    ({**GOOD, "energy": {"e_acc": {"value": 1, "unit": "pJ", "source": "s"}}}, "energy.e_acc: unknown key"),
    ({**GOOD, "colour": "red"}, "colour: unknown key"),
    (with_ac(value=1, unit="pJ", source="s", comment="?"), "energy.e_ac.comment: unknown key"),
    (with_ac(value=0.9, source="s"), "energy.e_ac: missing unit"),
    (with_ac(value=0.9, unit="pJ"), "energy.e_ac: missing source"),
    (with_ac(value=0.9, unit="pJ", source=" "), "energy.e_ac: source must be a non-empty"),
    (with_ac(value=-1.0, unit="pJ", source="s"), "energy.e_ac: negative value -1.0"),
    (with_ac(value="0.9", unit="pJ", source="s"), "energy.e_ac: value must be a finite number"),
    (with_ac(value=True, unit="pJ", source="s"), "energy.e_ac: value must be a finite number"),
    (with_ac(value=float("nan"), unit="pJ", source="s"), "energy.e_ac: value must be a finite number"),
    (with_ac(value=0.9, unit="pj", source="s"), "energy.e_ac: unknown unit 'pj'"),
    (with_ac(value=0.9, unit="mW", source="s"), "energy.e_ac: unit 'mW' is not a unit of energy"),
    (with_ac(value=0.9, unit="pJ", source="s", estimate="yes"), "energy.e_ac: estimate must be true or false"),
    ({"description": "d"}, "name: required"),
    ({**GOOD, "memory": [1, 2]}, "memory: must be a mapping"),
])
def test_bad_profile_names_file_and_key(tmp_path, doc, message):
    path = write(tmp_path, doc)
    with pytest.raises(UserError) as err:
        load_profile(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        load_profile(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_profile(bad)


def test_missing_figure_for_a_model_names_profile(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(UserError, match=r"energy.e_mac: figure missing"):
        load_profile(path).si("energy.e_mac")
