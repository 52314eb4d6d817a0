"""Counting: hand-computed counts on a hand-built IR (border effects, strides, groups), the float
model's counts keyed by the IR's node ids and equal to independent probes, and exact agreement
with the Lava simulation of the same frames."""
from __future__ import annotations

import deploy.lava_compat  # noqa: F401  (before anything imports Lava)
import deploy.lava.runner  # noqa: F401  (Lava sets the 'fork' start method on import: before any test runs)

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from converters.ir import NetworkIR, Node
from spiketrack.default_model import resolve_model
from spiketrack.models.fuse import fuse_for_inference
from spiketrack.models.probes import record_spikes
from spiketrack.models.procedural import procedural_inputs
from spiketrack.profiler.counting import (CountingModel, FixedPointCountingModel, conv_synops, count_graph,
                                          mean_firing_rate, totals)
from spiketrack.profiler.counts import LayerCounts, from_json
from spiketrack.profiler.run import count_tracking, first_frames

FRAMES = 3  # of Crossing: one template encoding, two search steps
CONV3 = {"kernel": [3, 3], "padding": 1, "groups": 1, "per_step": False}


def conv_node(node_id, src, shape, cin, **attrs):
    a = {**CONV3, **attrs}
    weight = np.ones((shape[1], cin // a["groups"], *a["kernel"]), dtype=np.int64)
    return Node(node_id, "conv", [src], shape, 6, a, {"weight": weight, "bias": np.zeros(shape[1], np.int64)})


def hand_graph() -> NetworkIR:
    """img 4x4 -> stem 3x3 (dense) -> n1 -> c1 3x3/2 pad 1 -> n2 -> dw 3x3 groups 3 -> n3; memory k=n3,
    v=n2; retrieve q=n2 (backbone) and from a state memory input (MRM); add; sigmoid."""
    nodes = [
        Node("img", "input", [], (1, 1, 4, 4), 8, {"kind": "image"}, location="host"),
        Node("M0", "input", [], (1, 1, 3, 3), 4, {"kind": "memory"}),
        Node("stem", "conv_dense", ["img"], (1, 2, 4, 4), 6, {**CONV3, "stride": 1},
             {"weight": np.ones((2, 1, 3, 3), np.int64), "bias": np.zeros(2, np.int64)}, location="host"),
        Node("n1", "neuron", ["stem"], (1, 2, 4, 4), 2),
        conv_node("c1", "n1", (1, 3, 2, 2), 2, stride=2),
        Node("n2", "neuron", ["c1"], (1, 3, 2, 2), 2),
        conv_node("dw", "n2", (1, 3, 2, 2), 3, stride=1, groups=3),
        Node("n3", "neuron", ["dw"], (1, 3, 2, 2), 2),
        Node("mem", "memory", ["n3", "n2"], (1, 1, 3, 3), 4, {"heads": 1}),
        Node("ret", "retrieve", ["n2", "mem"], (1, 3, 2, 2), 6, {"heads": 1}),
        Node("ret2", "retrieve", ["n2", "M0"], (1, 3, 2, 2), 6, {"heads": 1}),
        Node("add", "add", ["ret", "c1"], (1, 3, 2, 2), 6),
        Node("sig", "sigmoid", ["add"], (1, 3, 2, 2), 8, location="host"),
    ]
    graph = NetworkIR("search", "hand", nodes, ["img", "M0"], {"out": "sig"})
    graph.validate()
    return graph


def hand_spikes() -> dict[str, np.ndarray]:
    n1 = np.zeros((1, 2, 4, 4), np.int64)
    n1[0, 0, 0, 0] = 4      # corner: covered by 1 x 1 windows of c1 (3x3, stride 2, pad 1)
    n1[0, 1, 1, 1] = 1      # covered by 2 x 2 windows
    n1[0, 1, 3, 3] = 2      # last row/column: 1 x 1
    n1[0, 1, 2, 1] = 3      # 1 x 2
    n2 = np.zeros((1, 3, 2, 2), np.int64)
    n2[0, 0] = [[1, 0], [0, 2]]
    n2[0, 2, 0, 1] = 3
    n3 = np.zeros((1, 3, 2, 2), np.int64)
    n3[0, 0, 0, 0] = 4
    return {"n1": n1, "n2": n2, "n3": n3}


def test_hand_counts():
    layers = {l.layer_id: l for l in count_graph(hand_graph(), hand_spikes())}
    assert "M0" not in layers  # memory inputs are state, not layers (as the simulator's records)
    # c1: Cout 3 x (4*1*1 + 1*2*2 + 2*1*1 + 3*1*2) = 3 x 16; without border effects it would be 3 x 9 x 10
    assert layers["c1"] == LayerCounts("c1", "conv", "neuro", True, 1, synops=48, weight_bytes=54 + 12, fan_out=12)
    # dw on 2x2, 3x3 pad 1: every pixel is in 2 x 2 windows, 1 output channel per group: 6 spikes x 4
    assert layers["dw"].synops == 24 and layers["dw"].kind == "dwconv" and layers["dw"].fan_out == 9
    assert layers["stem"] == LayerCounts("stem", "conv", "host", False, 1, dense_macs=32 * 9,
                                         weight_bytes=18 + 8, fan_out=18)
    assert [(layers[n].spikes, layers[n].neurons, layers[n].neuron_updates) for n in ("n1", "n2", "n3")] == [
        (10, 32, 32), (6, 12, 12), (4, 12, 12)]
    assert layers["mem"].attention_ops == 4 * 3 and layers["mem"].kind == "attention"   # sum(k) x dv
    assert layers["ret"].attention_ops == 6 * 3 and layers["ret"].kind == "attention"   # sum(q) x dv
    assert layers["ret2"].attention_ops == 18 and layers["ret2"].kind == "memory_read"  # reads state
    assert (layers["img"].host_ops, layers["add"].host_ops, layers["sig"].host_ops) == (16, 12, 12)
    assert totals(list(layers.values()))["synops"] == 72
    assert mean_firing_rate(list(layers.values())) == pytest.approx(20 / 56)


def test_missing_spikes_are_named():
    values = hand_spikes()
    del values["n2"]
    with pytest.raises(ValueError, match="no values for 1 spike edge.*n2"):
        count_graph(hand_graph(), values)


@pytest.mark.parametrize("size, kernel, stride, pad, groups", [
    (7, 3, 1, 1, 1), (7, 3, 2, 1, 1), (6, 3, 2, 1, 4), (5, 2, 2, 0, 1),  # 5 with k2 s2: last column unread
    (8, 7, 1, 3, 4), (6, 1, 1, 0, 1), (9, 3, 2, 0, 2),
])
def test_conv_synops_equal_all_ones_convolution(size, kernel, stride, pad, groups):
    """The definition: conv of the input spikes with an all-ones kernel of the layer's geometry, summed."""
    rng = np.random.default_rng(size * 100 + kernel * 10 + stride)
    cin, cout = 4, 8
    x = rng.integers(0, 5, size=(2, cin, size, size)) * (rng.random((2, cin, size, size)) < 0.4)
    out = (size + 2 * pad - kernel) // stride + 1
    node = Node("c", "conv", ["x"], (2, cout, out, out), 6,
                {"kernel": [kernel, kernel], "stride": stride, "padding": pad, "groups": groups})
    ones = torch.ones(cout, cin // groups, kernel, kernel, dtype=torch.float64)
    expected = F.conv2d(torch.from_numpy(x).double(), ones, None, stride, pad, 1, groups).sum()
    assert conv_synops(x, node) == int(expected)


# ----------------------------------------------------------------------------------- float model

@pytest.fixture(scope="module")
def tiny():
    return resolve_model(None, "tiny")


@pytest.fixture(scope="module")
def float_graphs(tiny):
    from converters.graph import build_float_graphs

    return dict(zip(("template", "search"), build_float_graphs(tiny.model)))


@pytest.fixture(scope="module")
def bundle_dir(tiny, tmp_path_factory) -> Path:
    """The tiny model quantized and exported for Lava (one calibration image: quick)."""
    from converters.export_lava import export_bundle
    from converters.quantize import default_calibration_frames

    out = tmp_path_factory.mktemp("counting") / "bundle"
    export_bundle(tiny.model, out, default_calibration_frames(limit=1))
    return out


@pytest.fixture(scope="module")
def float_run(tiny, sequences_dir):
    """The float tracker counted on the first 3 frames of Crossing (1 encoding + 2 search steps)."""
    return count_tracking(tiny.model, first_frames(sequences_dir / "Crossing", FRAMES), variant="tiny",
                          checkpoint="none", weights=tiny.weights)


def test_float_counts_keyed_like_the_ir(float_run, bundle_dir):
    from converters.export_lava import load_export

    bundle, _ = load_export(bundle_dir)
    run = float_run
    for record, graph in ((run.search, bundle.search), (run.template, bundle.template)):
        ir_ids = [n.id for n in graph.nodes if not (n.op == "input" and n.attrs.get("kind") == "memory")]
        assert [l.layer_id for l in record.layers] == ir_ids
    assert (run.search.frames, run.template.frames, len(run.per_frame)) == (2, 1, 2)
    neuron = next(l for l in run.search.layers if l.kind == "neuron")
    assert neuron.neuron_updates == 2 * neuron.neurons * neuron.timesteps
    assert 0 < mean_firing_rate(run.search.layers) < 4


def test_float_spikes_equal_record_spikes(tiny, float_graphs):
    """The counting hooks and the fixture probes (`record_spikes`) see the same calls and spikes."""
    model = fuse_for_inference(tiny.model)
    counting = CountingModel(model, float_graphs)
    templates, search = procedural_inputs(1, 128)
    with torch.inference_mode():
        memories = counting.encode_templates(templates)
        with record_spikes(model) as probes:
            counting.track_step(search, memories)
    layers = {l.layer_id: l for l in counting.record("search", variant="tiny", checkpoint="", weights="").layers}
    neurons = {k for k, l in layers.items() if l.kind == "neuron"}
    assert neurons == set(probes)
    assert all(layers[k].spikes == int(probes[k].t_counts.sum()) for k in neurons)


def conv_modules(model: nn.Module, source: str) -> list[nn.Module]:
    """The conv module(s) behind an IR conv node's source path (Sequential(conv, bn), conv, or per-step list)."""
    module = model.get_submodule(source)
    items = list(module) if isinstance(module, nn.ModuleList) else [module]
    return [m[0] if isinstance(m, nn.Sequential) else m for m in items]


def test_float_synops_equal_all_ones_convolution_of_hooked_inputs(tiny, float_graphs):
    """Synops of every spike conv of a search step equal an all-ones convolution of the conv module's
    actual input (captured by its own pre-hook), summed."""
    model = fuse_for_inference(tiny.model)
    counting = CountingModel(model, float_graphs)
    expected: dict[str, float] = {}
    handles = []

    def pre_hook(node_id: str):
        def fn(conv: nn.Module, inputs) -> None:
            x = torch.round(inputs[0].double() * 4)
            ones = torch.ones_like(conv.weight, dtype=torch.float64)
            y = (F.conv2d if x.dim() == 4 else F.conv1d)(x, ones, None, conv.stride, conv.padding, 1, conv.groups)
            expected[node_id] = expected.get(node_id, 0.0) + float(y.sum())
        return fn

    templates, search = procedural_inputs(1, 128)
    with torch.inference_mode():
        memories = counting.encode_templates(templates)
        for node in float_graphs["search"].nodes:
            if node.op == "conv":
                handles += [m.register_forward_pre_hook(pre_hook(node.id)) for m in conv_modules(model, node.source)]
        counting.track_step(search, memories)
    for h in handles:
        h.remove()
    got = {l.layer_id: l.synops for l in counting.record("search", variant="t", checkpoint="", weights="").layers
           if l.kind in ("conv", "dwconv", "linear") and l.input_is_spike}
    assert len(got) > 100 and got == {k: int(v) for k, v in expected.items()}


# ------------------------------------------------------------------------- agreement with Lava

def test_counts_agree_with_lava_simulation(bundle_dir, float_run, sequences_dir, tmp_path):
    """`spiketrack simulate` (Lava, fixed_pt) and counting on the fixed-point reference of the same frames
    write identical records, field by field, for both graphs; the float run's records have the same
    layers in the same order."""
    from converters.export_lava import load_export
    from deploy.simulate import bundle_config, simulate
    from spiketrack.tracker.runner import run_tracker_on_sequence
    from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker, TrackerParams

    frames, crossing = 2, sequences_dir / "Crossing"  # one encoding + one search step: Lava is slow
    sim = simulate(bundle_dir, crossing, frames=frames, out_dir=tmp_path / "sim", backend="lava", progress=False)
    bundle, _ = load_export(bundle_dir)
    cfg = bundle_config(bundle, bundle_dir)
    reference = FixedPointCountingModel(bundle, cfg)
    seq = first_frames(crossing, frames)
    boxes, _ = run_tracker_on_sequence(SpikeTrackTracker(reference, TrackerParams.from_model_cfg(cfg)
                                                         .for_dataset(seq.name)), seq, progress=False)
    np.testing.assert_array_equal(boxes, sim.boxes)  # same crops, so the same node values
    for graph, path in (("search", sim.counts_path), ("template", sim.template_counts_path)):
        lava = from_json(path)
        ours = reference.record(graph, variant=lava.variant, checkpoint=lava.checkpoint, weights=lava.weights,
                                source="lava")
        assert lava.frames == ours.frames == (frames - 1 if graph == "search" else 1)
        differ = [(a.layer_id, b) for a, b in itertools.zip_longest(lava.layers, ours.layers) if a != b]
        assert not differ, f"{graph}: {len(differ)} layers differ, first {differ[:2]}"
        assert sum(l.synops for l in ours.layers) > 0 and sum(l.spikes for l in ours.layers) > 0
        floats = getattr(float_run, graph)
        assert [l.layer_id for l in floats.layers] == [l.layer_id for l in lava.layers]
        assert [l.kind for l in floats.layers] == [l.kind for l in lava.layers]
