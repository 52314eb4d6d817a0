"""Reference trackers and the generic runner on the first frames of the real Crossing sequence."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from spiketrack.data.datasets import load_sequence
from spiketrack.data.sequence import Sequence
from spiketrack.errors import UserError
from spiketrack.evaluation.ope import iou
from spiketrack.tracker.baselines import OPENCV_KINDS, OpenCVTracker, StaticBoxTracker
from spiketrack.tracker.runner import run_tracker_on_sequence

SEQUENCES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sequences"
N_FRAMES = 20


@pytest.fixture(scope="module")
def crossing() -> Sequence:
    """The first 20 frames of Crossing (a pedestrian walking slowly left)."""
    seq = load_sequence(SEQUENCES / "Crossing")
    return dataclasses.replace(seq, frames=seq.frames[:N_FRAMES], ground_truth=seq.ground_truth[:N_FRAMES],
                               absent=seq.absent[:N_FRAMES])


def test_static_tracker_repeats_the_initial_box(crossing: Sequence) -> None:
    boxes, fps = run_tracker_on_sequence(StaticBoxTracker(), crossing, progress=False)
    assert boxes.shape == (N_FRAMES, 4) and fps > 0
    np.testing.assert_array_equal(boxes, np.repeat(crossing.init_box[None], N_FRAMES, axis=0))
    assert iou(boxes, crossing.ground_truth).mean() < 0.3  # the floor the OpenCV trackers must beat


@pytest.mark.parametrize("kind", OPENCV_KINDS)
def test_opencv_trackers_follow_the_pedestrian(crossing: Sequence, kind: str) -> None:
    boxes, fps = run_tracker_on_sequence(OpenCVTracker(kind), crossing, progress=False)
    assert boxes.shape == (N_FRAMES, 4) and np.isfinite(boxes).all() and fps > 0
    np.testing.assert_array_equal(boxes[0], crossing.init_box)
    assert iou(boxes, crossing.ground_truth).mean() > 0.3
    assert not (boxes[1:] == boxes[0]).all()  # it moved


def test_unknown_opencv_kind() -> None:
    with pytest.raises(ValueError, match="kcf, csrt, mil"):
        OpenCVTracker("boosting")


class RecordingTracker:
    """Duck-typed tracker that records what the runner hands it and drifts 1 px right per frame."""

    def __init__(self) -> None:
        self.images: list[tuple[int, ...]] = []
        self.box = np.zeros(4)

    def initialize(self, image: np.ndarray, box: np.ndarray) -> None:
        self.images.append(image.shape)
        self.box = np.asarray(box, dtype=float)

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        self.images.append(image.shape)
        self.box = self.box + [1, 0, 0, 0]
        return self.box, 0.5


def test_runner_is_duck_typed(crossing: Sequence) -> None:
    tracker = RecordingTracker()
    boxes, _ = run_tracker_on_sequence(tracker, crossing, progress=False)
    assert tracker.images == [(240, 360, 3)] * N_FRAMES  # one initialize + N-1 track calls
    np.testing.assert_array_equal(boxes[:, 0] - crossing.init_box[0], np.arange(N_FRAMES))


def test_runner_needs_a_first_box(crossing: Sequence) -> None:
    gt = crossing.ground_truth.copy()
    gt[0] = np.nan
    with pytest.raises(UserError, match="first frame: initial box nan,nan,nan,nan is not finite"):
        run_tracker_on_sequence(StaticBoxTracker(), dataclasses.replace(crossing, ground_truth=gt), progress=False)
