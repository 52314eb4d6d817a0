"""norse as an independent simulator of the binary expansion: identical spike trains on real frames."""
from __future__ import annotations

from pathlib import Path

import torch

from converters.binary import fire_half_up
from converters.norse_check import compare_with_norse, norse_fire, norse_thresholds
from converters.quantize import default_calibration_frames, quantize_model
from spiketrack.data.datasets import load_sequence
from spiketrack.data.images import read_image
from spiketrack.models import build_model
from spiketrack.models.procedural import load_procedural_weights
from spiketrack.tracker.preprocessing import normalize_crop, sample_target

SEQUENCES = Path(__file__).resolve().parents[1] / "../shared/data/sequences"


def crops(size: int, sequence: str = "boat1") -> tuple[torch.Tensor, torch.Tensor]:
    """Template (1, 3, S, S) from frame 0 and search crop (1, 3, S, S) from frame 5 around the first box."""
    seq = load_sequence(SEQUENCES / sequence)

    def crop(i: int) -> torch.Tensor:
        return normalize_crop(sample_target(read_image(seq.frames[i]), seq.init_box, 4.0, size)[0])[None]

    return crop(0), crop(5)


def test_norse_imports_and_window_equals_ours():
    import norse.torch  # noqa: F401  (needs nir and nirtorch)

    v = torch.arange(-300, 1200, dtype=torch.int64)
    for frac_bits in (2, 3, 4, 7):
        assert torch.equal(norse_fire(v, {"f_in": frac_bits}), fire_half_up(v, frac_bits)), frac_bits
    assert norse_thresholds(4) == [7.0, 8.0, 4.0, 2.0]
    big = torch.tensor([2 ** 23 - 1, -(2 ** 23)], dtype=torch.int64)  # edges of the 24-bit range
    assert torch.equal(norse_fire(big, {"f_in": 12}), fire_half_up(big, 12))


def test_norse_trains_equal_ours_on_real_frames():
    """Every neuron window of both graphs re-simulated by norse; norse spikes drive the later layers."""
    model = load_procedural_weights(build_model("tiny"))
    bundle = quantize_model(model, default_calibration_frames(limit=1)).bundle
    template, search = crops(128)
    result, run = compare_with_norse(bundle.template, {"templates": template})
    assert result.ok, result.mismatched
    assert result.neurons == sum(n.op == "neuron" for n in bundle.template.nodes)
    result, _ = compare_with_norse(bundle.search, {"search": search, **run.outputs})
    assert result.ok, result.mismatched
    assert result.binary_spikes > 100_000
