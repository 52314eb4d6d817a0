"""The embedded demo sequence: frames rendered from photos shipped inside scikit-image, exact ground truth.

A target patch (the astronaut's face) moves along a smooth Lissajous path with a slow scale
change over a background photo (coffee) seen by a slowly panning camera. Everything is
deterministic, so the sequence is identical on every machine and needs no download.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from spiketrack.data.datasets import load_otb_sequence
from spiketrack.data.sequence import Sequence
from spiketrack.utils.atomic import atomic_dir

TARGET_BOX = (160, 15, 135, 150)  # x, y, w, h of the face in skimage.data.astronaut()


@dataclass(frozen=True)
class DemoPath:
    """Geometry of the rendered sequence (frame size, length, motion amplitudes)."""

    frames: int = 60
    width: int = 480
    height: int = 360
    target_width: int = 60  # target width at scale 1 (px)
    scale_amplitude: float = 0.25
    pan: float = 40.0  # background pan amplitude (px)


def _target_patch() -> np.ndarray:
    import skimage.data

    x, y, w, h = TARGET_BOX
    return skimage.data.astronaut()[y:y + h, x:x + w]


def _background(path: DemoPath) -> np.ndarray:
    import skimage.data

    big = (path.width + 2 * int(path.pan), path.height + 2 * int(path.pan))
    return cv2.resize(skimage.data.coffee(), big, interpolation=cv2.INTER_AREA)


def render_frame(i: int, path: DemoPath, patch: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame i (RGB uint8) and its exact target box (x, y, w, h)."""
    phase = 2 * np.pi * i / path.frames
    ox = int(round(path.pan * (1 + np.sin(phase))))
    oy = int(round(path.pan * (1 + np.sin(2 * phase) / 2)))
    frame = background[oy:oy + path.height, ox:ox + path.width].copy()
    scale = 1 + path.scale_amplitude * np.sin(phase)
    w = int(round(path.target_width * scale))
    h = int(round(w * patch.shape[0] / patch.shape[1]))
    cx = path.width / 2 + 0.3 * path.width * np.sin(phase)
    cy = path.height / 2 + 0.25 * path.height * np.sin(2 * phase + 0.5)
    x, y = int(round(cx - w / 2)), int(round(cy - h / 2))
    frame[y:y + h, x:x + w] = cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA)
    return frame, np.array([x, y, w, h], dtype=np.float64)


def write_demo_sequence(out_dir: str | Path, path: DemoPath = DemoPath()) -> Sequence:
    """Render the demo sequence in OTB layout (`img/0001.jpg…`, `groundtruth_rect.txt`) and load it."""
    out_dir = Path(out_dir)
    patch, background = _target_patch(), _background(path)
    with atomic_dir(out_dir) as tmp:
        (tmp / "img").mkdir()
        boxes = []
        for i in range(path.frames):
            frame, box = render_frame(i, path, patch, background)
            cv2.imwrite(str(tmp / "img" / f"{i + 1:04d}.jpg"), frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            boxes.append(box)
        np.savetxt(tmp / "groundtruth_rect.txt", np.array(boxes), fmt="%d", delimiter=",")
    return load_otb_sequence(out_dir)
