"""Frame decoding: every tracker and tool reads images through here (RGB uint8, one error style)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spiketrack.errors import UserError


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array (grayscale is expanded to 3 channels).

    Raises UserError naming the file if it is missing, empty or not a decodable image."""
    path = Path(path)
    if not path.is_file():
        raise UserError("no such file" if not path.exists() else "not a file", path)
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise UserError("empty file", path)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError("cannot decode image", path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
