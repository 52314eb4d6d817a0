"""Energy models on a hand-built 3-layer record, checked against totals computed by hand.

Layers (2 frames): a dense stem (1000 MACs on pixels), a spike conv (2000 synops, 200 neuron
updates, 120 spikes) and a spike attention placed on the host (500 attention ops, 300 host ops).
"""
import json
from pathlib import Path

import pytest
import yaml

from spiketrack.errors import UserError
from spiketrack.profiler.counts import CountsRecord, LayerCounts, check_variant, from_json
from spiketrack.profiler.energy import (MODEL_FIGURES, energy_memory_aware, energy_neuromorphic,
                                        energy_paper, evaluate_profile)
from spiketrack.profiler.profiles import load_profile

PROFILE_DIR = Path(__file__).resolve().parents[1] / "hw_profiles"
PJ = 1e-12


def figure(value, unit):
    return {"value": value, "unit": unit, "source": "round test number"}


ROUND = {  # round numbers so every total below can be checked by hand
    "name": "round",
    "description": "test profile",
    "energy": {"e_mac": figure(4, "pJ"), "e_ac": figure(1, "pJ"), "e_synop": figure(20, "pJ"),
               "e_neuron_update": figure(50, "pJ"), "e_spike_routed": figure(2, "pJ"),
               "e_host_op": figure(5, "pJ")},
    "power": {"static_power": figure(100, "mW")},
    "memory": {"word_bits": figure(64, "bit"), "e_weight_read": figure(64, "pJ"),
               "weight_bits": figure(8, "bit"), "e_input_read": figure(32, "pJ"),
               "spike_bits": figure(4, "bit"), "e_state_read": figure(16, "pJ"),
               "e_state_write": figure(32, "pJ"), "state_bits": figure(16, "bit")},
}


@pytest.fixture
def record() -> CountsRecord:
    return CountsRecord("s256_t1", "hand-built", 2, "pytorch", "none", [
        LayerCounts("stem", "conv", "neuro", False, 1, dense_macs=1000, weight_bytes=10),
        LayerCounts("conv1", "conv", "neuro", True, 1, neurons=100, spikes=120, synops=2000,
                    neuron_updates=200, fan_out=20),
        LayerCounts("attn", "attention", "host", True, 1, attention_ops=500, host_ops=300),
    ])


@pytest.fixture
def rounded(tmp_path):
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump(ROUND))
    return load_profile(path)


def test_paper_model(record, rounded):
    b = energy_paper(record, rounded)
    # stem 1000 MAC x 4 + conv1 2000 AC x 1 + attn 500 spike attention ops x 1 = 6500 pJ
    assert b.total_j == pytest.approx(6500 * PJ)
    assert b.per_frame_j == pytest.approx(3250 * PJ)
    assert b.component_totals() == pytest.approx({"mac": 4000 * PJ, "ac": 2500 * PJ})
    assert "E_MAC" in b.formula and "E_AC" in b.formula


def test_paper_model_on_shipped_cmos45nm(record):
    b = energy_paper(record, load_profile(PROFILE_DIR / "cmos45nm.yaml"))
    assert b.total_j == pytest.approx((1000 * 4.6 + 2500 * 0.9) * PJ)  # 6850 pJ


def test_paper_model_charges_non_spike_attention_as_mac(rounded):
    rec = CountsRecord("v", "c", 1, "lava", "w", [LayerCounts("a", "attention", "neuro", False, 1, attention_ops=10)])
    assert energy_paper(rec, rounded).total_j == pytest.approx(40 * PJ)


def test_neuromorphic_model(record, rounded):
    b = energy_neuromorphic(record, rounded, sim_time_s=0.01, chips=2)
    # stem on chip: 1000 MACs as synops x 20 = 20000; conv1: 2000 x 20 + 200 x 50 + 120 x 2 = 50240;
    # attn on host: (500 + 300) x 5 = 4000; static: 0.1 W x 0.01 s x 2 chips = 2 mJ
    layer_totals = {l.layer_id: l.total_j for l in b.layers}
    assert layer_totals == pytest.approx({"stem": 20000 * PJ, "conv1": 50240 * PJ, "attn": 4000 * PJ})
    assert b.shared == pytest.approx({"static": 2e-3})
    assert b.total_j == pytest.approx(74240 * PJ + 2e-3)
    assert b.parameters == {"sim_time_s": 0.01, "chips": 2}


def test_memory_aware_model(record, rounded):
    b = energy_memory_aware(record, rounded)
    # per-access energies: W = 64/64*8 = 8, Is = 32/64*4 = 2, Ia = 32/64*16 = 8, Sr = 16/64*16 = 4,
    # Sw = 32/64*16 = 8 pJ.
    # stem:  compute 1000*4 + weights 1000*8 + inputs 1000*8                     = 20000
    # conv1: compute 2000*1 + 200*(4 + 2*1) + weights 2000*8 + inputs 2000*2
    #        + state (2000 + 200)*(4 + 8)                                           = 49600
    # attn:  compute 500*1 + 300*5 + inputs 500*2 + operand 500*4 + state 500*12     = 11000
    layers = {l.layer_id: l for l in b.layers}
    assert layers["stem"].total_j == pytest.approx(20000 * PJ)
    assert layers["conv1"].components == pytest.approx({
        "compute": 3200 * PJ, "weight_read": 16000 * PJ, "input_read": 4000 * PJ,
        "operand_read": 0.0, "state_access": 26400 * PJ})
    assert layers["attn"].total_j == pytest.approx(11000 * PJ)
    assert b.total_j == pytest.approx(80600 * PJ)
    assert "Lemaire" in b.formula and "no data reuse" in b.formula


def test_evaluate_profile_skips_models_without_figures(record):
    loihi = load_profile(PROFILE_DIR / "loihi.yaml")
    result = evaluate_profile(record, loihi, sim_time_s=0.0)
    assert [b.model for b in result.breakdowns] == ["neuromorphic"]
    assert set(result.skipped) == {"paper", "memory_aware"}
    assert "energy.e_mac" in result.skipped["paper"]
    with pytest.raises(UserError, match="loihi.yaml: energy.e_mac: figure missing"):
        energy_paper(record, loihi)


def test_evaluate_profile_runs_all_models_on_complete_profile(record, rounded):
    result = evaluate_profile(record, rounded, sim_time_s=0.01)
    assert [b.model for b in result.breakdowns] == list(MODEL_FIGURES)
    assert result.breakdown("paper").total_j == pytest.approx(6500 * PJ)


def test_counts_round_trip(record, tmp_path):
    path = tmp_path / "counts.json"
    record.to_json(path)
    assert from_json(path) == record
    assert record.layer("conv1").firing_rate(record.frames) == pytest.approx(120 / (100 * 1 * 2))
    assert record.layer("stem").firing_rate(record.frames) is None


def test_check_variant(record, tmp_path):
    check_variant(record, "s256_t1", tmp_path / "c.json")
    with pytest.raises(UserError, match=r"c.json: counts are for variant 's256_t1', expected 'b256_t3'"):
        check_variant(record, "b256_t3", tmp_path / "c.json")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["layers"][1].update(synops=-5), "layers[conv1].synops: must be a non-negative integer"),
    (lambda d: d["layers"][1].update(synops=1.5), "layers[conv1].synops: must be a non-negative integer"),
    (lambda d: d["layers"][0].update(colour=1), "layers[0].colour: unknown field"),
    (lambda d: d["layers"][0].update(location="gpu"), "layers[stem].location: must be one of"),
    (lambda d: d["layers"][0].update(kind="lstm"), "layers[stem].kind: must be one of"),
    (lambda d: d["layers"][0].update(timesteps=0), "layers[stem].timesteps: must be >= 1"),
    (lambda d: d["layers"][2].update(layer_id="stem"), "duplicate layer ids ['stem']"),
    (lambda d: d.update(source="tensorflow"), "source: must be one of"),
    (lambda d: d.update(frames=0), "frames: must be an integer >= 1"),
    (lambda d: d.pop("format"), "not a counts file"),
])
def test_malformed_counts_raise_user_error(record, tmp_path, edit, message):
    data = record.to_dict()
    edit(data)
    path = tmp_path / "counts.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as err:
        from_json(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_counts_not_json(tmp_path):
    path = tmp_path / "counts.json"
    path.write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        from_json(path)
