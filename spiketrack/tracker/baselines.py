"""Reference trackers with the pytracking-style interface `initialize(image, box)` / `track(image)`.

Images are (H, W, 3) uint8 RGB; boxes are `x,y,w,h` float arrays in pixels, 0-based top-left.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

_OPENCV_FACTORIES: dict[str, Callable[[], object]] = {
    "kcf": cv2.TrackerKCF_create,
    "csrt": cv2.TrackerCSRT_create,
    "mil": cv2.TrackerMIL_create,
}
OPENCV_KINDS = tuple(_OPENCV_FACTORIES)


class StaticBoxTracker:
    """Never moves: reports the initial box on every frame (the floor any tracker must beat)."""

    def __init__(self) -> None:
        self._box: np.ndarray | None = None

    def initialize(self, image: np.ndarray, box: np.ndarray) -> None:
        """Remember the initial box."""
        self._box = np.asarray(box, dtype=np.float64).copy()

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Return the initial box with score 1."""
        if self._box is None:
            raise RuntimeError("track() called before initialize()")
        return self._box.copy(), 1.0


def _clip_to_image(box: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Round a box to integer pixels inside the image (OpenCV trackers reject boxes that leave it)."""
    height, width = shape[:2]
    x1, y1 = np.clip(np.round(box[:2]), 0, [width - 1, height - 1])
    x2, y2 = np.clip(np.round(box[:2] + box[2:]), [x1 + 1, y1 + 1], [width, height])
    return int(x1), int(y1), int(x2 - x1), int(y2 - y1)


class OpenCVTracker:
    """OpenCV contrib trackers ('kcf', 'csrt', 'mil'); on a lost frame the last box is kept with score 0."""

    def __init__(self, kind: str) -> None:
        if kind not in _OPENCV_FACTORIES:
            raise ValueError(f"unknown OpenCV tracker {kind!r}; choose one of {', '.join(OPENCV_KINDS)}")
        self.kind = kind
        self._tracker = None
        self._box: np.ndarray | None = None

    def initialize(self, image: np.ndarray, box: np.ndarray) -> None:
        """Create a fresh OpenCV tracker on `box` (rounded and clipped to the image)."""
        box = np.asarray(box, dtype=np.float64)
        if not (np.isfinite(box).all() and box[2] > 0 and box[3] > 0):
            raise ValueError(f"invalid initial box {box.tolist()}")
        self._tracker = _OPENCV_FACTORIES[self.kind]()
        self._tracker.init(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), _clip_to_image(box, image.shape))
        self._box = box.copy()

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Update on the next frame; score is 1 if OpenCV reports success, else 0."""
        if self._tracker is None:
            raise RuntimeError("track() called before initialize()")
        found, box = self._tracker.update(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if found:
            self._box = np.asarray(box, dtype=np.float64)
        return self._box.copy(), float(found)
