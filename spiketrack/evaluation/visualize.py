"""Annotated GIF of a tracked sequence: ground truth in green, prediction in red."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from spiketrack.data.images import read_image
from spiketrack.data.sequence import Sequence
from spiketrack.utils.atomic import atomic_path


def _draw(image: np.ndarray, box: np.ndarray, color: tuple[int, int, int]) -> None:
    if np.isfinite(box).all():
        x, y, w, h = np.round(box).astype(int)
        cv2.rectangle(image, (x, y), (x + w, y + h), color, 2)


def annotated_gif(seq: Sequence, boxes: np.ndarray, path: str | Path, max_side: int = 480,
                  fps: float = 15.0) -> Path:
    """Write the frames with GT (green) and predicted (red) boxes as an animated GIF."""
    frames = []
    for i, frame_path in enumerate(seq.frames):
        image = read_image(frame_path).copy()
        _draw(image, seq.ground_truth[i], (0, 200, 0))
        _draw(image, boxes[i], (230, 0, 0))
        cv2.putText(image, f"#{i + 1}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 0), 2)
        scale = max_side / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frames.append(Image.fromarray(image))
    path = Path(path)
    with atomic_path(path, suffix=".gif") as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=int(1000 / fps), loop=0)
    return path
