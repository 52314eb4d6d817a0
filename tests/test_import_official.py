"""Official checkpoint import: every key of every official variant maps; bad files are one-line errors."""
from __future__ import annotations

import json

import pytest
import torch

from converters.official import guess_variant, import_official, variant_shapes
from spiketrack.checkpoint import load_checkpoint, load_model
from spiketrack.cli import main
from spiketrack.errors import UserError
from spiketrack.models.procedural import procedural_state_dict
from spiketrack.models.spiketrack import unused_parameter_names
from spiketrack.models import get_config

from conftest import SPEC

OFFICIAL = ["s256_t1", "s256_t3", "b256_t1", "b256_t3", "b384_t1", "b384_t3"]


def spec_keys(variant: str) -> dict[str, dict]:
    return json.loads((SPEC / "keys" / f"state_dict_{variant}.json").read_text())["keys"]


@pytest.mark.parametrize("variant", OFFICIAL)
def test_model_keys_equal_official_key_list(variant):
    keys = spec_keys(variant)
    ours = variant_shapes(variant)
    assert set(ours) == set(keys)
    assert all(list(ours[k]) == keys[k]["shape"] for k in keys)


@pytest.mark.parametrize("variant", ["s256_t1", "s256_t3"])
def test_unused_parameters_match_autograd_list(variant):
    expected = json.loads((SPEC / "keys" / "unused_params_autograd.json").read_text())[variant]
    assert sorted(unused_parameter_names(get_config(variant))) == sorted(expected)


def _official_file(tmp_path, variant, mutate=None, wrap=True):
    shapes = {k: tuple(v["shape"]) for k, v in spec_keys(variant).items()}
    state = procedural_state_dict(shapes)
    if mutate:
        mutate(state)
    path = tmp_path / f"spiketrack_{variant}.pth.tar"
    torch.save({"net": state, "epoch": 300} if wrap else state, path)
    return path, state


@pytest.mark.parametrize("wrap", [True, False])
def test_import_roundtrip_s256_t1(tmp_path, wrap):
    src, state = _official_file(tmp_path, "s256_t1", wrap=wrap)
    report = import_official(src, "s256_t1", tmp_path / "out.pt")
    assert report.mapped == len(state) == 1215
    model = load_model(tmp_path / "out.pt", "s256_t1")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    meta = load_checkpoint(tmp_path / "out.pt").meta
    assert meta["source"] == "official" and len(meta["unused_parameters"]) == 255


def test_import_b384_t3_every_key(tmp_path):
    src, state = _official_file(tmp_path, "b384_t3")
    report = import_official(src, "b384_t3", tmp_path / "b.pt")
    assert report.mapped == len(spec_keys("b384_t3")) == 1359


def test_ddp_prefix_is_stripped(tmp_path):
    shapes = {k: tuple(v["shape"]) for k, v in spec_keys("s256_t1").items()}
    state = {f"module.{k}": v for k, v in procedural_state_dict(shapes).items()}
    torch.save({"net": state}, tmp_path / "ddp.pth")
    assert import_official(tmp_path / "ddp.pth", "s256_t1", tmp_path / "o.pt").mapped == 1215


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path):
    def mutate(state):
        del state["decoder.conv5_ctr.bias"]
        state["encoder.extra.weight"] = torch.zeros(3)
        state["decoder.conv5_size.weight"] = torch.zeros(3, 24, 1, 1)

    src, _ = _official_file(tmp_path, "s256_t1", mutate)
    with pytest.raises(UserError) as err:
        import_official(src, "s256_t1", tmp_path / "o.pt")
    msg = str(err.value)
    assert "\n" not in msg and str(src) in msg
    assert "decoder.conv5_ctr.bias" in msg and "encoder.extra.weight" in msg and "decoder.conv5_size.weight" in msg
    assert not (tmp_path / "o.pt").exists()


def test_other_variant_is_named(tmp_path):
    src, _ = _official_file(tmp_path, "s256_t3")
    with pytest.raises(UserError, match="matches variant 's256_t3'"):
        import_official(src, "s256_t1", tmp_path / "o.pt")
    assert guess_variant(torch.load(src, weights_only=True)["net"]) == "s256_t3"


def test_truncated_and_non_checkpoint_files(tmp_path):
    src, _ = _official_file(tmp_path, "s256_t1")
    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for bad in (truncated, text, empty, tmp_path / "missing.pth"):
        with pytest.raises(UserError) as err:
            import_official(bad, "s256_t1", tmp_path / "o.pt")
        assert str(bad) in str(err.value) and "\n" not in str(err.value)


class Settings:  # stands for the pickled training objects official checkpoints may carry
    lr = 4e-4


def test_pickled_objects_need_explicit_trust(tmp_path):
    shapes = {k: tuple(v["shape"]) for k, v in spec_keys("s256_t1").items()}
    path = tmp_path / "with_settings.pth.tar"
    torch.save({"net": procedural_state_dict(shapes), "settings": Settings()}, path)
    with pytest.raises(UserError, match="--trust-pickle"):
        import_official(path, "s256_t1", tmp_path / "o.pt")
    assert import_official(path, "s256_t1", tmp_path / "o.pt", trust_pickle=True).mapped == 1215


def test_cli_import_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    assert main(["import-official", str(bad), "--variant", "s256_t1", "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err
