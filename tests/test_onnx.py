"""ONNX export of the float model: graphs against PyTorch on real crops (layer by layer), opsets,
output folder, metadata (fixed point: test_onnx_fixed.py)."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from converters import onnx_export
from converters.onnx_export import (MANIFEST_FILE, MAP_NAMES, MEMORY_NAMES, OnnxExport, check_opset,
                                    convert_opset, export_onnx, export_onnx_command, spike_outputs,
                                    weights_description, with_outputs)
from spiketrack.data.datasets import load_sequence
from spiketrack.data.images import read_image
from spiketrack.errors import UserError
from spiketrack.models import build_model
from spiketrack.models.fuse import fuse_for_inference
from spiketrack.models.neuron import MultiSpikeNeuron
from spiketrack.models.procedural import load_procedural_weights
from spiketrack.tracker.preprocessing import normalize_crop, sample_target

SEQUENCES = Path(__file__).resolve().parents[1] / "../shared/data/sequences"
TOL = 1e-5


def crops(size: int, sequence: str = "wakeboard7") -> tuple[torch.Tensor, torch.Tensor]:
    """Template (1, 1, 3, S, S) from frame 0, search (1, 1, 3, S, S) from frame 3, around the first box."""
    seq = load_sequence(SEQUENCES / sequence)

    def crop(i: int) -> torch.Tensor:
        return normalize_crop(sample_target(read_image(seq.frames[i]), seq.init_box, 4.0, size)[0])[None, None]

    return crop(0), crop(3)


def session(proto_or_path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    data = proto_or_path.SerializeToString() if isinstance(proto_or_path, onnx.ModelProto) else str(proto_or_path)
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def neuron_outputs(model: torch.nn.Module, fn) -> dict[str, list[torch.Tensor]]:
    """Integer spike counts of every neuron call while `fn` runs: module path -> one tensor per call and step."""
    found: dict[str, list[torch.Tensor]] = defaultdict(list)
    hooks = [m.register_forward_hook(lambda mod, _i, out, name=name: found[name].extend(
        torch.round(out * mod.max_value)))
        for name, m in model.named_modules() if isinstance(m, MultiSpikeNeuron)]
    try:
        with torch.no_grad():
            fn()
    finally:
        for h in hooks:
            h.remove()
    return found


def layer_flips(proto: onnx.ModelProto, feeds: dict[str, np.ndarray],
                reference: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Per neuron layer, the fraction of spike counts onnxruntime computes differently (mismatch fraction)."""
    rounds = spike_outputs(proto)
    assert sorted(rounds) == sorted(reference) and all(len(rounds[k]) == len(reference[k]) for k in rounds)
    names = [n for k in rounds for n in rounds[k]]
    values = run(session(with_outputs(proto, names)), feeds)
    flips = {}  # in execution order
    for path in rounds:
        ours = np.concatenate([values[n].ravel() for n in rounds[path]])
        theirs = np.concatenate([t.numpy().ravel() for t in reference[path]])
        flips[path] = float(np.mean(ours != theirs))
    return flips


@pytest.fixture(scope="module")
def float_export(tmp_path_factory):
    """Tiny model with procedural weights, exported without onnxscript's optimizer (it only folds
    constants and drops dead nodes, and costs as much time as the export; the benchmark script
    runs the default path); the fused model is what is exported."""
    model = load_procedural_weights(build_model("tiny"))
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    export_onnx(model, out, optimize=False)
    return model, fuse_for_inference(model), out


def test_command_summary_and_manifest(float_export, monkeypatch, tmp_path):
    model, _, out = float_export
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["opset"] == 18 and manifest["numerics"] == "float32" and "PROCEDURAL" in manifest["weights"]
    step = manifest["graphs"]["track_step.onnx"]
    assert list(step["inputs"]) == ["search", *MEMORY_NAMES] and list(step["outputs"]) == list(MAP_NAMES)
    assert step["inputs"]["search"]["shape"] == [1, 1, 3, 128, 128]
    assert step["outputs"]["size_map"]["shape"] == [1, 2, 8, 8]
    proto = onnx.load(out / "template_encoder.onnx")
    assert proto.opset_import[0].version == 18
    assert {p.key: p.value for p in proto.metadata_props}["variant"] == "tiny"
    assert all(d.dim_value > 0 for v in proto.graph.output for d in v.type.tensor_type.shape.dim)  # static
    # the CLI glue prints where the graphs went and that the weights are procedural
    calls = []
    monkeypatch.setattr(onnx_export, "export_onnx", lambda m, o: calls.append(o) or OnnxExport(
        o, o / "template_encoder.onnx", o / "track_step.onnx", 18, False, "tiny", weights_description(m)))
    summary = onnx_export.export_onnx_command(model, tmp_path / "cli")
    assert calls == [tmp_path / "cli"] and "PROCEDURAL weights" in summary and str(tmp_path / "cli") in summary


def test_float_graphs_equal_pytorch_on_real_crops(float_export):
    """Outputs equal PyTorch within 1e-5, layer by layer.

    onnxruntime sums convolutions in another order than PyTorch, so a membrane within float32
    rounding of a k + 1/2 tie can round to the other spike count; such a flip then propagates.
    We therefore compare every neuron layer's spike counts (the spec's mismatch fraction): where
    no layer flips, outputs must agree within 1e-5; where one does, the first flipping layer may
    only differ in a handful of elements (ties), and the outputs are not compared."""
    _, fused, out = float_export
    template, search = crops(128)
    enc, step = onnx.load(out / "template_encoder.onnx"), onnx.load(out / "track_step.onnx")
    ref_enc = neuron_outputs(fused, lambda: fused.encode_templates(template))
    with torch.no_grad():
        memories = fused.encode_templates(template)
        maps = fused.track_step(search, memories)
    ref_step = neuron_outputs(fused, lambda: fused.track_step(search, memories))
    enc_flips = layer_flips(enc, {"templates": template.numpy()}, ref_enc)
    feeds = {"search": search.numpy(), **{n: m.numpy() for n, m in zip(MEMORY_NAMES, memories)}}
    step_flips = layer_flips(step, feeds, ref_step)  # fed PyTorch's memories: layers compare 1:1
    got_memories = run(session(out / "template_encoder.onnx"), {"templates": template.numpy()})
    got_maps = run(session(out / "track_step.onnx"), feeds)
    for flips, got, ref, names in ((enc_flips, got_memories, memories, MEMORY_NAMES),
                                   (step_flips, got_maps, [maps[k] for k in MAP_NAMES], MAP_NAMES)):
        flipped = [k for k, v in flips.items() if v > 0]
        if not flipped:
            for name, value in zip(names, ref):
                np.testing.assert_allclose(got[name], value.numpy(), rtol=0, atol=TOL, err_msg=name)
        else:
            assert flips[flipped[0]] < 1e-3, (flipped[0], flips[flipped[0]])
    assert sum(float(t.sum()) for v in ref_step.values() for t in v) > 1e4  # real crops drive the network


def test_float_graph_converts_to_opset_17(float_export):
    """The exporter writes opset 18; onnx's converter gives 17 (reductions repaired), same outputs."""
    _, fused, out = float_export
    template, search = crops(128)
    enc17 = convert_opset(onnx.load(out / "template_encoder.onnx"), 17)
    step17 = convert_opset(onnx.load(out / "track_step.onnx"), 17)
    assert enc17.opset_import[0].version == 17
    memories = run(session(enc17), {"templates": template.numpy()})
    maps = run(session(step17), {"search": search.numpy(), **memories})
    memories18 = run(session(out / "template_encoder.onnx"), {"templates": template.numpy()})
    maps18 = run(session(out / "track_step.onnx"), {"search": search.numpy(), **memories18})
    for name in (*MEMORY_NAMES, *MAP_NAMES):
        got, want = (memories | maps)[name], (memories18 | maps18)[name]
        assert np.array_equal(got, want), name


def test_bad_opset_and_output_path(tmp_path):
    model = build_model("tiny")
    for opset in (16, 27, "18"):
        with pytest.raises(UserError, match="opset"):
            check_opset(opset)
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        export_onnx(model, target)
    with pytest.raises(UserError, match="is a file"):
        export_onnx_command(model, target)
    assert target.read_text() == "x"
    with pytest.raises(UserError, match="opset"):
        export_onnx(model, tmp_path / "out", opset=12)
    assert not (tmp_path / "out").exists()
    assert "PROCEDURAL" not in weights_description(model)
