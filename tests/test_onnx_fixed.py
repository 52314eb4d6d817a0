"""Fixed-point ONNX export: onnxruntime reproduces `converters.fixed_point` bit for bit on real crops."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from converters.fixed_point import run_fixed
from converters.onnx_export import MANIFEST_FILE, MAP_NAMES, export_onnx
from converters.onnx_fixed import fixed_point_model
from converters.quantize import default_calibration_frames, quantize_model
from spiketrack.data.datasets import load_sequence
from spiketrack.data.images import read_image
from spiketrack.errors import UserError
from spiketrack.models import build_model
from spiketrack.models.procedural import load_procedural_weights
from spiketrack.tracker.preprocessing import normalize_crop, sample_target

SEQUENCES = Path(__file__).resolve().parents[1] / "../shared/data/sequences"


def crops(size: int, sequence: str = "Crossing") -> tuple[torch.Tensor, torch.Tensor]:
    """Template (1, 1, 3, S, S) from frame 0, search (1, 1, 3, S, S) from frame 3, around the first box."""
    seq = load_sequence(SEQUENCES / sequence)

    def crop(i: int) -> torch.Tensor:
        return normalize_crop(sample_target(read_image(seq.frames[i]), seq.init_box, 4.0, size)[0])[None, None]

    return crop(0), crop(3)


def run(proto_or_path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime (2 threads) outputs by name."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    data = proto_or_path.SerializeToString() if isinstance(proto_or_path, onnx.ModelProto) else str(proto_or_path)
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def test_fixed_point_graphs_bit_exact(tmp_path):
    """Fixed point (opset 17): memories and maps identical to `converters.fixed_point` on real crops,
    and (probes) every integer node of the search graph."""
    model = load_procedural_weights(build_model("tiny"))
    bundle = quantize_model(model, default_calibration_frames(limit=1)).bundle
    result = export_onnx(model, tmp_path / "fixed", fixed_point=True, opset=17, bundle=bundle)
    assert result.fixed_point and json.loads((result.folder / MANIFEST_FILE).read_text())["output_frac_bits"]
    template, search = crops(128)
    ref_t = run_fixed(bundle.template, {"templates": template[:, 0]})
    memories = run(result.template_encoder, {"templates": template.numpy()})
    for name, nid in bundle.template.outputs.items():
        assert memories[name].dtype == np.int64
        assert np.array_equal(memories[name][:, 0], ref_t.values[nid].numpy()), name
    ref_s = run_fixed(bundle.search, {"search": search[:, 0], **{k: ref_t.values[v] for k, v in
                                                                bundle.template.outputs.items()}})
    maps = run(result.track_step, {"search": search.numpy(), **memories})
    for name in MAP_NAMES:
        assert np.array_equal(maps[name], ref_s.outputs[name].to(torch.float32).numpy()), name
    probes = run(fixed_point_model(bundle.search, probes=True), {"search": search.numpy(), **memories})
    differ = [n.id for n in bundle.search.nodes if n.op != "input"
              and not np.array_equal(probes[n.id], ref_s.values[n.id].numpy())]
    assert differ == []


def test_t3_gate_is_refused(tmp_path):
    """The t3 channel gate (host softmax in float64) has no exact ONNX lowering: a one-line user error."""
    model = load_procedural_weights(build_model("tiny", num_templates=3, search_size=64))
    bundle = quantize_model(model, default_calibration_frames(limit=1)).bundle
    with pytest.raises(UserError, match="gate"):
        export_onnx(model, tmp_path / "t3", fixed_point=True, bundle=bundle)
