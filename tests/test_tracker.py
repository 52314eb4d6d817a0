"""SpikeTrack tracker: update rule, confidence, validation (stub model) and real-sequence runs."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spiketrack.data.images import read_image
from spiketrack.errors import UserError
from spiketrack.models import build_model
from spiketrack.tracker.preprocessing import hann2d
from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker, TrackerParams, update_template_list

CROSSING = Path(__file__).resolve().parents[1] / "../shared/data/sequences/Crossing"
FRAME = np.full((480, 640, 3), 128, dtype=np.uint8)
BOX = (100.0, 80.0, 40.0, 40.0)


class StubModel(torch.nn.Module):
    """Model interface with a fixed score peak; records every stacked template tensor it encodes."""

    def __init__(self, peak: float, at: tuple[int, int] = (8, 8), num_templates: int = 3,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg = SimpleNamespace(search_size=64, num_templates=num_templates, feat_size=16)
        self.weight = torch.nn.Parameter(torch.zeros(1, dtype=dtype))
        self.peak, self.at = peak, at
        self.encoded: list[torch.Tensor] = []

    def encode_templates(self, templates: torch.Tensor) -> list[torch.Tensor]:
        self.encoded.append(templates.clone())
        return [templates.mean()]

    def track_step(self, search: torch.Tensor, memories: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        assert search.shape == (1, 1, 3, 64, 64) and search.dtype == self.weight.dtype
        score = torch.full((1, 1, 16, 16), 1e-4, dtype=search.dtype)
        score[0, 0, self.at[0], self.at[1]] = self.peak
        return {"score_map": score, "size_map": torch.full((1, 2, 16, 16), 0.25, dtype=search.dtype),
                "offset_map": torch.zeros(1, 2, 16, 16, dtype=search.dtype)}


def run_stub(model: StubModel, frames: int, **overrides) -> tuple[SpikeTrackTracker, list[float]]:
    params = TrackerParams(search_size=64, template_size=64, num_templates=model.cfg.num_templates,
                           update_interval=3, **overrides)
    tracker = SpikeTrackTracker(model, params)
    tracker.initialize(FRAME, BOX)
    return tracker, [tracker.track(FRAME)[1] for _ in range(frames)]


def test_update_template_list_sequence():
    templates = ["z0"] * 3
    history = []
    for new in ("z1", "z2", "z3"):
        templates = update_template_list(templates, new, 3)
        history.append(templates)
    assert history == [["z0", "z0", "z1"], ["z0", "z1", "z2"], ["z0", "z2", "z3"]]
    assert update_template_list(["z0"], "z1", 2) == ["z0", "z1"]


def test_params_defaults_follow_official_dataset_rule():
    params = TrackerParams.from_model_cfg(SimpleNamespace(search_size=384, num_templates=3))
    assert (params.template_size, params.search_size, params.num_templates) == (384, 384, 3)
    assert (params.template_factor, params.search_factor, params.use_hann_window) == (4.0, 4.0, True)
    for name in ("lasot", "lasot_extension_subset"):
        lasot = params.for_dataset(name)
        assert (lasot.update_threshold, lasot.update_interval) == (0.8, 40)
    for name in ("got10k_test", "otb", "uav"):
        other = params.for_dataset(name)
        assert (other.update_threshold, other.update_interval) == (0.7, 25)


def test_templates_update_every_interval_and_reencode():
    model = StubModel(peak=0.95)
    tracker, _ = run_stub(model, 2)
    assert len(model.encoded) == 1  # frame_id 1, 2: no update yet
    for _ in range(7):
        tracker.track(FRAME)
    assert len(model.encoded) == 4  # init + frames 3, 6, 9
    init, *updates = model.encoded
    assert all(t.shape == (3, 1, 3, 64, 64) for t in model.encoded)
    assert all(torch.equal(t[0], init[0]) for t in updates)  # index 0 is never replaced
    assert torch.equal(updates[0][1], init[1])  # [z0, z0, z1]
    assert torch.equal(updates[1][1], updates[0][2]) and torch.equal(updates[2][1], updates[1][2])


def test_confidence_is_hann_windowed_max():
    model = StubModel(peak=0.72, at=(0, 0))  # raw peak above 0.7, windowed far below
    _, scores = run_stub(model, 6)
    assert scores[0] == pytest.approx(0.72 * float(hann2d(16)[0, 0]))
    assert len(model.encoded) == 1
    model = StubModel(peak=0.72, at=(0, 0))
    _, scores = run_stub(model, 6, use_hann_window=False)
    assert scores[0] == pytest.approx(0.72) and len(model.encoded) == 3


def test_single_template_model_never_updates():
    model = StubModel(peak=0.99, num_templates=1)
    run_stub(model, 6)
    assert len(model.encoded) == 1 and model.encoded[0].shape == (1, 1, 3, 64, 64)


def test_centred_peak_keeps_the_box_and_follows_model_dtype():
    model = StubModel(peak=0.9, dtype=torch.float64)
    tracker, _ = run_stub(model, 1)
    assert model.encoded[0].dtype == torch.float64
    np.testing.assert_allclose(tracker.state, BOX, atol=1e-4)  # crop side 160: 0.25 * 160 = 40 px


@pytest.mark.parametrize("box, message", [
    ((10, 10, 0, 5), "has zero area"),
    ((10, 10, 5, -3), "has zero area"),
    ((10, float("nan"), 5, 5), "is not finite"),
    ((640, 10, 5, 5), "lies outside the 640x480 frame"),
    ((-20, 10, 20, 5), "lies outside the 640x480 frame"),
    ((1, 2, 3), "must be 4 values"),
])
def test_invalid_initial_box_is_a_user_error(box, message):
    params = TrackerParams(search_size=64, template_size=64, num_templates=3)
    tracker = SpikeTrackTracker(StubModel(peak=0.9), params)
    with pytest.raises(UserError, match=message):
        tracker.initialize(FRAME, box)


def test_track_before_initialize_and_mismatched_params_raise():
    model = StubModel(peak=0.9)
    with pytest.raises(RuntimeError, match="before initialize"):
        SpikeTrackTracker(model).track(FRAME)
    with pytest.raises(ValueError, match="do not match the model"):
        SpikeTrackTracker(model, TrackerParams(search_size=64, template_size=64, num_templates=1))


@pytest.fixture
def one_thread():
    """Single-threaded torch: on a busy shared 2-core machine two OpenMP threads run far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def crossing(count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """First `count` RGB frames of the OTB Crossing sequence and its initial box."""
    frames = sorted((CROSSING / "img").glob("*.jpg"))[:count]
    return [read_image(f) for f in frames], np.loadtxt(CROSSING / "groundtruth_rect.txt")[0]


def test_tiny_model_tracks_crossing(one_thread):
    torch.manual_seed(0)
    tracker = SpikeTrackTracker(build_model("tiny"))
    images, init_box = crossing(10)
    height, width = images[0].shape[:2]
    tracker.initialize(images[0], init_box)
    for image in images[1:]:
        box, score = tracker.track(image)
        x, y, w, h = box
        assert np.isfinite(box).all() and 0.0 <= score <= 1.0
        assert 0 <= x and 0 <= y and w >= 10 and h >= 10 and x + w <= width and y + h <= height


def test_tiny_three_template_model_reencodes_on_update(one_thread, monkeypatch):
    torch.manual_seed(0)
    model = build_model("tiny", num_templates=3)
    encoded = []
    encode = model.encode_templates
    monkeypatch.setattr(model, "encode_templates", lambda t: encoded.append(t.shape) or encode(t))
    params = dataclasses.replace(TrackerParams.from_model_cfg(model.cfg), update_interval=2,
                                 update_threshold=0.0)
    tracker = SpikeTrackTracker(model, params)
    images, init_box = crossing(5)
    tracker.initialize(images[0], init_box)
    boxes = [tracker.track(image)[0] for image in images[1:]]
    assert encoded == [(3, 1, 3, 128, 128)] * 3  # init + frames 2 and 4
    assert np.isfinite(boxes).all()
