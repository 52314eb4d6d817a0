"""Quantizer and fixed-point reference: BN folding, weight quantization, per-op integer semantics
(docs/FIXED_POINT.md, hand-computed), float graph == model, fixed vs float spikes on real frames."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from converters.fixed_point import FixedPointModel, int_op, rshift, run_fixed, spike_mismatch
from converters.graph import build_float_graphs, fold_model, run_float, upsample_weights
from converters.ir import Node
from converters.quantize import (QuantConfig, calibration_inputs, crop, default_calibration_frames,
                                 multiplier_shift, quantize_model, quantize_weights)
from spiketrack.data.datasets import load_sequence
from spiketrack.data.images import read_image
from spiketrack.models import build_model
from spiketrack.models.procedural import load_procedural_weights, procedural_inputs
from spiketrack.models.retrieval import ChannelGate
from spiketrack.tracker.preprocessing import normalize_crop, sample_target
from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker

SEQUENCES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sequences"
I64 = torch.int64


@pytest.fixture(scope="module")
def tiny():
    return load_procedural_weights(build_model("tiny"))


@pytest.fixture(scope="module")
def quantized(tiny):
    return quantize_model(tiny, default_calibration_frames(2))


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=I64)


def node(op: str, shape, frac_bits: int, attrs: dict | None = None, params: dict | None = None) -> Node:
    return Node("n", op, ["a", "b"][:1], tuple(shape), frac_bits, attrs or {}, params or {})


# ---------------------------------------------------------------------------------------------- folding

def test_bn_folding_is_exact_in_float64(tiny):
    folded = fold_model(tiny)
    ref = copy.deepcopy(tiny).double()
    x = torch.randn(2, 16, 9, 9, dtype=torch.float64)
    pairs = [("encoder.block3.0.attn.q_conv", True), ("decoder.conv1_ctr", True),
             ("encoder.mrm.1.retriever.v_conv", True)]
    for path, _ in pairs:
        orig, fold = ref.get_submodule(path), folded.get_submodule(path)
        cin = orig[0].in_channels
        x = torch.randn(2, cin, 9, 9, dtype=torch.float64)
        assert torch.allclose(fold(x), orig(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3])
def test_float_graph_equals_model(steps):
    model = load_procedural_weights(build_model("tiny", num_templates=steps))
    template, search = build_float_graphs(model)
    z, x = procedural_inputs(steps, 128)
    ref = copy.deepcopy(model).double()
    with torch.no_grad():
        memories = ref.encode_templates(z.double())
        out = ref.track_step(x.double(), memories)
    tv = run_float(template, {"templates": z[:, 0]})
    for i, nid in enumerate(template.outputs.values()):
        assert torch.equal(tv[nid], memories[i][:, 0])
    sv = run_float(search, {"search": x[:, 0], **{k: tv[v] for k, v in template.outputs.items()}})
    for name, nid in search.outputs.items():
        assert torch.allclose(sv[nid], out[name][0], rtol=0, atol=1e-12), name
    assert any(n.op == "gate" for n in search.nodes) == (steps > 1)


# ---------------------------------------------------------------------------------------------- weights

def test_weight_quantization_hand_computed():
    w = np.array([0.5, -0.25, 1.0, 0.003])
    q = quantize_weights(w, QuantConfig(weight_policy="max"))
    assert q.exponent == -6  # 127 * 2^-7 < 1.0 <= 127 * 2^-6
    assert q.mantissa.tolist() == [32, -16, 64, 0]
    assert (q.clipped, q.zeroed) == (0, 1)


def test_outlier_is_clipped_and_reported():
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.uniform(-1, 1, 4095), [1.2]])
    mse = quantize_weights(w, QuantConfig())
    assert mse.exponent == -7 and mse.clipped >= 1
    assert mse.max_clip_error == pytest.approx(1.2 - 127 / 128)
    never = quantize_weights(w, QuantConfig(weight_policy="max"))
    assert never.clipped == 0 and never.exponent == -6
    assert mse.rel_rms_error < never.rel_rms_error


def test_overflowing_checkpoint_is_reported_not_silent(tiny):
    model = copy.deepcopy(tiny)
    sd = model.state_dict()
    w = sd["encoder.block3.0.mlp.fc1_conv.weight"]
    w.view(-1)[0] = 1.3 * w.abs().max()  # an outlier weight: clipped by the mse policy
    sd["decoder.conv1_ctr.1.bias"][0] = 1e7  # a folded bias beyond 24 bits at any F >= 2
    model.load_state_dict(sd)
    result = quantize_model(model, default_calibration_frames(1))
    flagged = {(r.graph, r.id): r for r in result.report.clipped_layers()}
    assert flagged[("template", "encoder.block3.0.mlp.fc1_conv")].clipped >= 1
    head = flagged[("search", "decoder.conv1_ctr")]
    assert head.bias_saturated == 1 and head.frac_bits == 2
    assert "decoder.conv1_ctr" in result.report.format(only_clipped=True)


# ---------------------------------------------------------------------------------------------- ops

def test_rshift_rounds_half_up():
    assert rshift(t([5, -5, 6, -6, 7, -7]), 1).tolist() == [3, -2, 3, -3, 4, -3]
    assert rshift(t([6, -6, 2, -2]), 2).tolist() == [2, -1, 1, 0]
    assert rshift(t([3, -3]), -2).tolist() == [12, -12]
    assert rshift(t([3]), 0).tolist() == [3]


def test_conv_hand_computed():
    # W = 2 * 2^-3 = 0.25, spike 3 (= 0.75): 0.1875 -> 3 at F_out = 4, plus bias 5
    n = node("conv", (1, 1, 1, 1), 4, {"kernel": [1, 1], "stride": 1, "padding": 0, "groups": 1,
                                       "per_step": False, "weight_exp": -3, "shift": 2 + 3 - 4},
             {"weight": np.array([[[[2]]]]), "bias": np.array([5])})
    y, sat = int_op(n, [t([[[[3]]]])], [2])
    assert y.tolist() == [[[[8]]]] and sat == 0
    # 3x3, padding 1, on a 2x2 map of ones: every output sums the 4 in-bounds taps
    n3 = node("conv", (1, 1, 2, 2), 0, {"kernel": [3, 3], "stride": 1, "padding": 1, "groups": 1,
                                        "per_step": False, "weight_exp": 0, "shift": 2},
              {"weight": np.arange(9).reshape(1, 1, 3, 3), "bias": np.array([0])})
    y, _ = int_op(n3, [torch.ones(1, 1, 2, 2, dtype=I64)], [2])
    # top-left output sees taps (1,1),(1,2),(2,1),(2,2) = 4+5+7+8 = 24 -> rshift(24, 2) = 6
    assert y[0, 0].tolist() == [[6, 5], [3, 2]]  # 24, 20, 12 (= 1+2+4+5), 8 -> 6, 5, 3, 2


def test_conv_saturates_and_counts():
    n = node("conv", (1, 1, 1, 1), 4, {"kernel": [1, 1], "stride": 1, "padding": 0, "groups": 1,
                                       "per_step": False, "weight_exp": 0, "shift": -30},
             {"weight": np.array([[[[100]]]]), "bias": np.array([0])})
    y, sat = int_op(n, [t([[[[4]]]])], [2])
    assert y.item() == 2 ** 23 - 1 and sat == 1


def test_neuron_hand_computed():
    # F = 4: x = 1.5, 0.5, 0; decay 0.5; soft reset by s/4 (= s * 2^(F-2))
    n = node("neuron", (3, 1, 1, 1), 2, {"f_in": 4, "decay": [2048, 2048], "reset": "normalized", "max_spike": 4})
    y, _ = int_op(n, [t([24, 8, 0]).view(3, 1, 1, 1)], [4])
    assert y.flatten().tolist() == [2, 1, 0]  # v = 24 -> 16 -> 6
    ties, _ = int_op(node("neuron", (1, 4, 1, 1), 2, {"f_in": 4, "decay": [], "reset": "normalized",
                                                       "max_spike": 4}), [t([40, -40, 200, 7]).view(1, 4, 1, 1)], [4])
    assert ties.flatten().tolist() == [3, 0, 4, 0]  # 2.5 rounds half up (float: 2), clamp 0..4
    integer = node("neuron", (2, 1, 1, 1), 2, {"f_in": 4, "decay": [4096], "reset": "integer", "max_spike": 4})
    y, _ = int_op(integer, [t([24, 0]).view(2, 1, 1, 1)], [4])
    assert y.flatten().tolist() == [2, 0]  # v1 = 24 - 2 * 16 = -8


def test_add_addpos_avgpool_repeat():
    add = Node("n", "add", ["a", "b"], (2, 1, 1, 1), 3, {"shifts": [1, -1]})
    y, _ = int_op(add, [t([9]).view(1, 1, 1, 1), t([3, 1]).view(2, 1, 1, 1)], [4, 2])
    assert y.flatten().tolist() == [11, 7]  # rshift(9,1)=5 broadcast over T, + 6, + 2
    pos = node("add_pos", (3, 1, 1, 1), 4, {"shift": 0}, {"table": np.array([1, 10]).reshape(2, 1, 1, 1)})
    y, _ = int_op(pos, [t([0, 0, 0]).view(3, 1, 1, 1)], [4])
    assert y.flatten().tolist() == [1, 10, 10]  # step t uses table min(t, 1)
    pool = node("avgpool", (1, 1, 1, 1), 5, {"kernel": 2, "shift": 2})
    y, _ = int_op(pool, [t([[1, 2], [3, 5]]).view(1, 1, 2, 2)], [5])
    assert y.item() == 3  # (11 + 2) >> 2
    rep = node("repeat", (3, 1, 1, 1), 5, {"steps": 3})
    assert int_op(rep, [t([7]).view(1, 1, 1, 1)], [5])[0].flatten().tolist() == [7, 7, 7]


@pytest.mark.parametrize("factor", [2, 4])
def test_upsample_weights_match_pytorch(factor):
    w = upsample_weights(3, factor)["wy"]
    if factor == 2:
        assert upsample_weights(2, 2)["wy"].tolist() == [[4, 0], [3, 1], [1, 3], [0, 4]]
    x = torch.randint(-1000, 1000, (1, 2, 3, 3), dtype=torch.float64)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    wt = torch.as_tensor(w, dtype=torch.float64)
    assert torch.equal(wt @ x @ wt.T / (2 * factor) ** 2, ref)
    n = node("upsample", (1, 2, 3 * factor, 3 * factor), 0, {"factor": factor, "shift": 2 * int(np.log2(2 * factor))},
             {"wy": w, "wx": w})
    y, _ = int_op(n, [x.to(I64)], [0])
    assert torch.equal(y, torch.floor(ref + 0.5).to(I64))


def test_memory_and_retrieve_hand_computed():
    k = t([[1, 2], [0, 4]]).view(1, 2, 1, 2)  # C = 2, one head, d = 2, N = 2 tokens
    v = t([[3, 1]]).view(1, 1, 1, 2)  # Cv = 1
    mem = Node("m", "memory", ["k", "v"], (1, 1, 2, 1), 4, {"heads": 1})
    m, _ = int_op(mem, [k, v], [2, 2])
    assert m.flatten().tolist() == [1 * 3 + 2 * 1, 0 * 3 + 4 * 1]  # [5, 4]
    m_, n_ = multiplier_shift(0.5)
    assert (m_, n_) == (32768, 16)
    # scale 2/sqrt(2) * 2^(F_out - 6) with F_out = 6: y = acc * sqrt(2), acc = q . M
    mult, shift = multiplier_shift(2 / np.sqrt(2))
    ret = Node("r", "retrieve", ["q", "m"], (1, 1, 1, 1), 6, {"heads": 1, "multiplier": mult, "shift": shift})
    y, _ = int_op(ret, [t([2, 3]).view(1, 2, 1, 1), m], [2, 4])
    assert y.item() == int(np.floor(22 * np.sqrt(2) + 0.5))  # acc = 2*5 + 3*4 = 22 -> 31


def test_sigmoid_and_gate_host_ops():
    sig = node("sigmoid", (1, 1, 1, 2), 16, {"clamp": [1e-4, 1 - 1e-4]})
    y, _ = int_op(sig, [t([0, -10 ** 6]).view(1, 1, 1, 2)], [4])
    assert y.flatten().tolist() == [32768, int(np.floor(1e-4 * 65536 + 0.5))]
    torch.manual_seed(0)
    gate = ChannelGate(16, {"max_value": 4, "reset": "normalized"}).double()
    o = torch.randint(0, 5, (3, 1, 8, 4, 4)).double() / 4
    ref = gate(o)[:, 0]
    params = {"w1": gate.mlp[0].weight[:, :, 0].detach().numpy(), "b1": gate.mlp[0].bias.detach().numpy(),
              "w2": gate.mlp[2].weight[:, :, 0].detach().numpy(), "b2": gate.mlp[2].bias.detach().numpy()}
    decay = [float(gate.mlp[1].decay[i].detach().sigmoid()) for i in range(2)]
    n = node("gate", (1, 8, 4, 4), 16, {"neuron_decay": decay, "reset": "normalized", "max_spike": 4}, params)
    y, _ = int_op(n, [(o[:, 0] * 4).to(I64)], [2])
    assert torch.allclose(y.double() / 2 ** 16, ref, atol=2 ** -17)


def test_image_input_quantization(quantized):
    graph = quantized.bundle.search
    x = torch.full((1, 3, 128, 128), 0.3)
    res = run_fixed(graph, {"search": x, **{n: torch.zeros(graph.node(n).shape, dtype=I64)
                                            for n in graph.inputs[1:]}})
    f = graph.node("search").frac_bits
    assert res.values["search"].unique().tolist() == [int(np.floor(0.3 * 2 ** f + 0.5))]


# ---------------------------------------------------------------------------------------------- model

def test_quantized_ir_is_consistent(quantized):
    for g in quantized.bundle.graphs().values():
        idx = g.index()
        for n in g.nodes:
            bits = [idx[i].frac_bits for i in n.inputs]
            if n.op == "neuron":
                assert n.frac_bits == 2 and n.attrs["f_in"] == bits[0]
            if n.op in ("conv", "conv_dense"):
                assert n.attrs["shift"] == bits[0] - n.attrs["weight_exp"] - n.frac_bits
                assert n.params["weight"].min() >= -128 and n.params["weight"].max() <= 127
            if n.op == "memory":
                assert n.frac_bits == 4
    report = quantized.report
    assert report.edges and report.layers and all(r.rel_rms_error < 0.02 for r in report.layers if r.weights > 64)


def frame_crops(n_frames: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Template of Crossing frame 0 and search crops of frames 1.. at the ground-truth box."""
    seq = load_sequence(SEQUENCES / "Crossing")
    template = normalize_crop(sample_target(read_image(seq.frames[0]), seq.ground_truth[0], 4.0, 128)[0])
    searches = [normalize_crop(sample_target(read_image(seq.frames[i]), seq.ground_truth[i - 1], 4.0, 128)[0])
                for i in range(1, n_frames + 1)]
    return template[None], searches


def test_fixed_vs_float_spikes_on_real_frames(tiny, quantized):
    """Mismatch per neuron layer stays within the float model's own sensitivity: the procedural net is
    chaotic, so each layer may differ at most 1.5x the mismatch caused by input noise of std 1e-4, plus 8
    points; the first five neuron layers by at most 2 %, the first ten by at most 5 %."""
    template_g, search_g = build_float_graphs(tiny)
    bundle = quantized.bundle
    template, searches = frame_crops(2)
    torch.manual_seed(0)
    noise = 1e-4
    tv = run_float(template_g, {"templates": template})
    tn = run_float(template_g, {"templates": template + noise * torch.randn_like(template)})
    tf = run_fixed(bundle.template, {"templates": template})
    mems = {k: tf.values[v] for k, v in bundle.template.outputs.items()}
    pairs = [(bundle.template, tf.values, tv, tn)]
    for search in searches:
        fv = {k: tv[v] for k, v in template_g.outputs.items()}
        sv = run_float(search_g, {"search": search[None], **fv})
        sn = run_float(search_g, {"search": search[None] + noise * torch.randn_like(search[None]), **fv})
        sf = run_fixed(bundle.search, {"search": search[None], **mems})
        assert sum(sf.saturated.values()) == 0
        assert all(torch.isfinite(v).all() for v in sf.outputs.values())
        pairs.append((bundle.search, sf.values, sv, sn))
    for graph, fixed, flt, noisy in pairs:
        mis = spike_mismatch(graph, fixed, flt)
        floor = spike_mismatch(graph, {k: (v * 4).round().to(I64) for k, v in noisy.items()}, flt)
        ids = list(mis)
        assert max(mis[i] for i in ids[:5]) <= 0.02 and max(mis[i] for i in ids[:10]) <= 0.05
        worst = max(ids, key=lambda i: mis[i] - 1.5 * floor[i])
        assert mis[worst] <= 1.5 * floor[worst] + 0.08, (worst, mis[worst], floor[worst])


def test_t3_runs_in_the_tracker():
    model = load_procedural_weights(build_model("tiny", num_templates=3))
    result = quantize_model(model, default_calibration_frames(1))
    assert any(n.op == "gate" and n.location == "host" for n in result.bundle.search.nodes)
    tracker = SpikeTrackTracker(FixedPointModel(result.bundle, model.cfg))
    seq = load_sequence(SEQUENCES / "Crossing")
    tracker.initialize(read_image(seq.frames[0]), seq.ground_truth[0])
    box, score = tracker.track(read_image(seq.frames[1]))
    assert np.isfinite(box).all() and 0 < score < 1
    assert tracker.memories[0].dtype == I64 and tracker.memories[0].shape[0] == 3


def test_calibration_uses_packaged_images_only():
    frames = default_calibration_frames()
    assert len(frames) >= 20 and {f.name for f in frames} >= {"astronaut", "coffee", "chelsea", "rocket"}
    z, x = calibration_inputs(frames[0], 128, 3)
    assert z.shape == (3, 3, 128, 128) and x.shape == (1, 3, 128, 128)
    assert torch.equal(z[1], crop(frames[0], 128, (0.15, -0.1, 1.1)))
