"""Test-time crop, normalisation, Hann window and box map-back as in the official tracker (§10)."""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch

from spiketrack.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sample_target(image: np.ndarray, box: Sequence[float], factor: float,
                  output_size: int) -> tuple[np.ndarray, float]:
    """Square crop of side ceil(sqrt(w*h)*factor) centred on `box` (x, y, w, h), zero-padded where it
    leaves the image (official off-by-one: the pad at the far edge is x2 - W + 1), resized bilinearly
    to `output_size`. Returns the crop (output_size, output_size, C) and output_size / crop side."""
    x, y, w, h = (float(v) for v in box)
    crop_sz = math.ceil(math.sqrt(w * h) * factor)
    if crop_sz < 1:
        raise ValueError(f"box {x, y, w, h} is too small to crop (crop side {crop_sz})")
    im_h, im_w = image.shape[:2]
    x1 = round(x + 0.5 * w - crop_sz * 0.5)
    y1 = round(y + 0.5 * h - crop_sz * 0.5)
    x2, y2 = x1 + crop_sz, y1 + crop_sz
    x1_pad, y1_pad = max(0, -x1), max(0, -y1)
    x2_pad, y2_pad = max(x2 - im_w + 1, 0), max(y2 - im_h + 1, 0)
    if x1 + x1_pad >= x2 - x2_pad or y1 + y1_pad >= y2 - y2_pad:
        raise ValueError(f"crop window of box {x, y, w, h} does not overlap the {im_w}x{im_h} image")
    inside = image[y1 + y1_pad:y2 - y2_pad, x1 + x1_pad:x2 - x2_pad]
    pad = ((y1_pad, y2_pad), (x1_pad, x2_pad)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(inside, pad, mode="constant", constant_values=0)
    crop = cv2.resize(padded, (output_size, output_size), interpolation=cv2.INTER_LINEAR)
    return crop, output_size / crop_sz


def normalize_crop(crop: np.ndarray) -> torch.Tensor:
    """RGB (S, S, 3), uint8 or float in 0..255 → float32 (3, S, S): /255, minus ImageNet mean,
    divided by ImageNet std."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    image = torch.from_numpy(np.ascontiguousarray(crop)).float().permute(2, 0, 1)
    return (image / 255.0 - mean) / std


def hann2d(size: int) -> torch.Tensor:
    """(F, F) float32 window outer(h1, h1), h1[k] = 0.5 * (1 - cos(2πk / (F + 1))), k = 1..F."""
    h1 = 0.5 * (1 - torch.cos((2 * math.pi / (size + 1)) * torch.arange(1, size + 1).float()))
    return h1[:, None] * h1[None, :]


def map_box_back(box_norm: torch.Tensor | np.ndarray, prev_state: Sequence[float],
                 resize_factor: float, search_size: int) -> np.ndarray:
    """Normalised (cx, cy, w, h) in the search crop → (x, y, w, h) in image pixels, the crop being
    centred on `prev_state` (x, y, w, h). The scaling runs in the input's own dtype, as officially."""
    cx, cy, w, h = (box_norm * search_size / resize_factor).tolist()
    px, py, pw, ph = (float(v) for v in prev_state)
    half_side = 0.5 * search_size / resize_factor
    cx_real = cx + (px + 0.5 * pw - half_side)
    cy_real = cy + (py + 0.5 * ph - half_side)
    return np.array([cx_real - 0.5 * w, cy_real - 0.5 * h, w, h], dtype=np.float64)


def clip_box(box: Sequence[float], height: int, width: int, margin: float = 10) -> np.ndarray:
    """Clip (x, y, w, h) to the image, keeping at least `margin` pixels inside and w, h ≥ margin."""
    x1, y1, w, h = (float(v) for v in box)
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0, x1), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0, y1), height - margin)
    y2 = min(max(margin, y2), height)
    return np.array([x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)], dtype=np.float64)


def check_init_box(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """The initial box as float64 (x, y, w, h); UserError if not 4 finite values, empty, or off-frame."""
    arr = np.asarray(box, dtype=np.float64)
    if arr.shape != (4,):
        raise UserError(f"initial box must be 4 values x, y, w, h, got shape {arr.shape}")
    text = ",".join(f"{v:g}" for v in arr)
    if not np.isfinite(arr).all():
        raise UserError(f"initial box {text} is not finite")
    x, y, w, h = arr
    if w <= 0 or h <= 0:
        raise UserError(f"initial box {text} has zero area (width and height must be positive)")
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        raise UserError(f"initial box {text} lies outside the {width}x{height} frame")
    return arr
