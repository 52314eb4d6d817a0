"""Binary-spike expansion: IF windows reproduce the multi-spike quantizer (ties included) and the
expanded network equals the integer-spike network layer by layer on real frames."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from converters.binary import (SUBSTEPS, binary_costs, binary_counts_record, fire_half_even, fire_half_up,
                               format_costs, run_binary, spike_counts)
from converters.fixed_point import rshift, run_fixed
from converters.graph import build_float_graphs, run_float
from converters.quantize import default_calibration_frames, quantize_model
from spiketrack.data.datasets import load_sequence
from spiketrack.data.images import read_image
from spiketrack.models import build_model
from spiketrack.models.procedural import load_procedural_weights
from spiketrack.profiler.counts import record_from_dict
from spiketrack.tracker.preprocessing import normalize_crop, sample_target

SEQUENCES = Path(__file__).resolve().parents[1] / "../shared/data/sequences"


def real_crops(size: int, steps: int, sequence: str = "Crossing") -> tuple[torch.Tensor, torch.Tensor]:
    """Templates (T, 3, S, S) from frames 0..T-1 and the search crop (1, 3, S, S) of frame T, each
    cropped (factor 4) around the first frame's ground-truth box."""
    seq = load_sequence(SEQUENCES / sequence)
    box = seq.init_box

    def crop(i: int) -> torch.Tensor:
        return normalize_crop(sample_target(read_image(seq.frames[i]), box, 4.0, size)[0])

    return torch.stack([crop(t) for t in range(steps)]), crop(steps)[None]


def front_loaded(trains: torch.Tensor) -> bool:
    """Every window's spikes come first: z_j >= z_{j+1} (sub-step axis 1)."""
    return bool((trains[:, :-1].to(torch.int8) >= trains[:, 1:].to(torch.int8)).all())


@pytest.fixture(scope="module")
def tiny():
    model = load_procedural_weights(build_model("tiny"))
    bundle = quantize_model(model, default_calibration_frames(limit=1)).bundle
    return model, bundle, real_crops(128, 1)


def run_pair(template, search, inputs, runner):
    """Reference runs of both graphs (the search side reads the reference memories) and the feeds."""
    templates, crop = inputs
    ref_t = runner(template, {"templates": templates})
    ref_t = ref_t if isinstance(ref_t, dict) else ref_t.values
    memories = {name: ref_t[nid] for name, nid in template.outputs.items()}
    ref_s = runner(search, {"search": crop, **memories})
    ref_s = ref_s if isinstance(ref_s, dict) else ref_s.values
    return [(template, ref_t, {"templates": templates}), (search, ref_s, {"search": crop, **memories})]


@pytest.fixture(scope="module")
def fixed_runs(tiny):
    """(graph, reference values, feed, binary run) for the template and search graphs, fixed point."""
    _, bundle, inputs = tiny
    return [(g, ref, feed, run_binary(g, feed, "fixed"))
            for g, ref, feed in run_pair(bundle.template, bundle.search, inputs, run_fixed)]


def test_fire_half_up_is_the_contract_quantizer():
    v = torch.arange(-70, 400, dtype=torch.int64)
    for frac_bits in (2, 3, 5):
        trains = fire_half_up(v, frac_bits)
        assert trains.shape == (SUBSTEPS, v.numel())
        assert torch.equal(trains.sum(0), rshift(v, frac_bits).clamp(0, 4))
        assert front_loaded(trains[None])


def test_fire_half_even_is_torch_round_including_ties():
    ties = torch.arange(-1, 6, dtype=torch.float64) + 0.5
    near = torch.cat([torch.nextafter(ties, ties - 1), ties, torch.nextafter(ties, ties + 1)])
    grid = torch.linspace(-2, 7, 1801, dtype=torch.float64)
    m = torch.cat([near, grid, torch.tensor([1e30, -1e30, 0.0, 4.0])])
    for dtype in (torch.float64, torch.float32):
        x = m.to(dtype)
        trains = fire_half_even(x)
        assert torch.equal(trains.sum(0).to(dtype), torch.round(x.clamp(0, 4))), dtype
        assert front_loaded(trains[None])
    # a tie that misses the strict threshold never fires later (0.5 -> 0, 2.5 -> 2)
    assert fire_half_even(torch.tensor([0.5, 2.5])).sum(0).tolist() == [0, 2]


def test_expansion_equals_integer_network_on_real_frames(fixed_runs):
    """Fixed point: every node of both graphs is bit-identical to the golden reference."""
    for graph, ref, _, run in fixed_runs:
        differ = [n.id for n in graph.nodes if not torch.equal(run.values[n.id], ref[n.id])]
        assert differ == [], f"{graph.name}: {differ[:5]}"
        neurons = [n.id for n in graph.nodes if n.op == "neuron"]
        assert sorted(run.trains) == sorted(neurons)
        for nid in neurons:
            assert run.trains[nid].shape[1] == SUBSTEPS and front_loaded(run.trains[nid])
            assert torch.equal(spike_counts(run.trains[nid]), ref[nid])
        assert sum(int(ref[n].sum()) for n in neurons) > 10_000  # the frames do drive the network


def test_expansion_equals_float_network_on_real_frames():
    """Float graph (round half to even): identical spikes in every layer and identical outputs.

    Synaptic sums over sub-steps are float64 sums in another order than W s, so conv outputs may
    differ in the last bit; a flip would need a membrane within ~1e-15 of a tie. Memory and retrieval
    sums are exact, and their ties (exact k + 1/2 membranes occur: tiny's mrm.1 has scale 1) agree.
    64 px crops keep the float64 run short."""
    model = load_procedural_weights(build_model("tiny", search_size=64))
    for graph, ref, feed in run_pair(*build_float_graphs(model), real_crops(64, 1), run_float):
        run = run_binary(graph, feed, "float")
        for node in graph.nodes:
            if node.op == "neuron":
                assert torch.equal(run.values[node.id], ref[node.id]), node.id
            else:
                assert torch.allclose(run.values[node.id], ref[node.id], rtol=0, atol=1e-12), node.id
        for nid in graph.outputs.values():
            assert torch.equal(run.values[nid], ref[nid])


def test_costs_and_counts_record(fixed_runs):
    search, ref_s, _, run = fixed_runs[1]
    costs = {c.layer_id: c for c in binary_costs(search, run)}
    for node in search.nodes:
        if node.op == "neuron":
            assert costs[node.id].binary_events == int(ref_s[node.id].sum())
            assert costs[node.id].graded_events == int((ref_s[node.id] > 0).sum())
    conv = next(n for n in search.nodes if n.op == "conv" and n.attrs["kernel"] == [1, 1]
                and n.attrs["groups"] == 1)
    spikes = ref_s[conv.inputs[0]]
    assert costs[conv.id].binary_synops == int(spikes.sum()) * conv.shape[1]  # 1x1: fan-out = Cout
    assert costs[conv.id].graded_synops == int((spikes > 0).sum()) * conv.shape[1]
    assert "1 -> 4 sub-steps" in format_costs(list(costs.values()))
    record = binary_counts_record(search, run, weights="procedural")
    assert record_from_dict(record.to_dict(), "mem") == record
    layer = record.layer(conv.inputs[0])
    assert layer.timesteps == SUBSTEPS and layer.spikes == int(spikes.sum())
    assert record.layer(conv.id).synops == costs[conv.id].binary_synops


def test_multi_step_neurons_and_gate_t3():
    """T = 3 templates: membrane recursion with decay and the host gate reading spike counts."""
    model = load_procedural_weights(build_model("tiny", num_templates=3, search_size=64))
    bundle = quantize_model(model, default_calibration_frames(limit=1)).bundle
    for graph, ref, feed in run_pair(bundle.template, bundle.search, real_crops(64, 3), run_fixed):
        run = run_binary(graph, feed, "fixed")
        assert all(torch.equal(run.values[n.id], ref[n.id]) for n in graph.nodes), graph.name
        assert max(run.trains[n].shape[0] for n in run.trains) == 3
    assert any(n.op == "gate" for n in bundle.search.nodes)


def test_rejects_non_four_spike_neurons(tiny):
    _, bundle, inputs = tiny
    graph = bundle.template
    node = next(n for n in graph.nodes if n.op == "neuron")
    node.attrs["max_spike"] = 3
    try:
        with pytest.raises(ValueError, match="max_spike"):
            run_binary(graph, {"templates": inputs[0]}, "fixed")
    finally:
        node.attrs["max_spike"] = 4
