"""The sequence record every dataset loader returns and every evaluation consumes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Sequence:
    """One video: sorted frame paths, `x,y,w,h` ground truth per frame (NaN rows = unknown)
    and a per-frame `absent` flag (full occlusion / out of view / absence label)."""

    name: str
    frames: tuple[Path, ...]
    ground_truth: np.ndarray  # (N, 4) float64, x, y, w, h in pixels, 0-based top-left
    absent: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def init_box(self) -> np.ndarray:
        """Ground-truth box of the first frame (the tracker's initialisation)."""
        return self.ground_truth[0]
