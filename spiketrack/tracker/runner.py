"""Run any tracker with `initialize(image, box)` / `track(image) -> (box, score)` over a sequence (OPE)."""
from __future__ import annotations

import time
from typing import Protocol

import numpy as np
from tqdm import tqdm

from spiketrack.data.images import read_image
from spiketrack.data.sequence import Sequence
from spiketrack.errors import UserError
from spiketrack.tracker.preprocessing import check_init_box


class Tracker(Protocol):
    """The duck-typed tracker interface (pytracking style, RGB uint8 images, `x,y,w,h` boxes)."""

    def initialize(self, image: np.ndarray, box: np.ndarray) -> None: ...

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]: ...


def run_tracker_on_sequence(tracker: Tracker, seq: Sequence, progress: bool = True) -> tuple[np.ndarray, float]:
    """One-pass run: initialise on frame 0 with the ground-truth box (which is also frame 0's output),
    track frames 1..N-1. Returns (N, 4) boxes and the tracking speed in frames/s (track calls only,
    image decoding excluded; NaN for a one-frame sequence)."""
    first = read_image(seq.frames[0])
    try:
        init_box = check_init_box(seq.init_box, *first.shape[:2])
    except UserError as err:
        raise UserError(f"sequence {seq.name!r}, first frame: {err.message}", seq.frames[0]) from None
    boxes = np.empty((len(seq), 4), dtype=np.float64)
    boxes[0] = init_box
    tracker.initialize(first, init_box.copy())
    elapsed = 0.0
    for i in tqdm(range(1, len(seq)), desc=seq.name, disable=not progress, leave=False):
        image = read_image(seq.frames[i])
        start = time.perf_counter()
        box, _score = tracker.track(image)
        elapsed += time.perf_counter() - start
        boxes[i] = box
    fps = (len(seq) - 1) / elapsed if elapsed > 0 else float("nan")
    return boxes, fps
