"""Tracker preprocessing against hand-computed crops, boxes and the official Hann window fixture."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from spiketrack.tracker.preprocessing import (IMAGENET_MEAN, IMAGENET_STD, clip_box, hann2d,
                                              map_box_back, normalize_crop, sample_target)

FIXTURE = Path(__file__).resolve().parents[1] / "../shared/spec/fixtures/fixture_s256_t1.npz"


def ramp_image(height: int = 20, width: int = 30) -> np.ndarray:
    """RGB uint8 image without zero pixels: 1 + (x + 3y) mod 200, channels offset by 0, 20, 40."""
    yy, xx = np.mgrid[:height, :width]
    base = 1 + (xx + 3 * yy) % 200
    return np.stack([base, base + 20, base + 40], axis=-1).astype(np.uint8)


def test_crop_side_is_ceil_of_scaled_geometric_mean():
    image = ramp_image(100, 100)
    crop, factor = sample_target(image, (40, 40, 20, 30), 2.0, 64)  # sqrt(600) * 2 = 48.99 → 49
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert factor == 64 / 49


def test_crop_rounds_half_to_even():
    image = ramp_image()
    # crop side 8; x + w/2 - 4 = 2.5 → 2 and y + h/2 - 4 = 3.5 → 4 (Python round)
    crop, factor = sample_target(image, (4.5, 5.5, 4, 4), 2.0, 8)
    assert factor == 1.0
    np.testing.assert_array_equal(crop, image[4:12, 2:10])


def test_crop_near_top_left_is_zero_padded():
    image = ramp_image()
    crop, _ = sample_target(image, (0, 0, 4, 4), 2.0, 8)  # window x, y in [-2, 6)
    assert (crop[:2] == 0).all() and (crop[:, :2] == 0).all()
    np.testing.assert_array_equal(crop[2:, 2:], image[0:6, 0:6])


def test_crop_far_edge_pad_has_official_off_by_one():
    image = ramp_image()  # width 30
    crop, _ = sample_target(image, (24, 10, 4, 4), 2.0, 8)  # window x in [22, 30) ends exactly at W
    np.testing.assert_array_equal(crop[:, :7], image[8:16, 22:29])
    assert (crop[:, 7] == 0).all()  # last image column replaced by padding (x2_pad = x2 - W + 1 = 1)


def test_crop_is_resized_bilinearly():
    image = ramp_image(100, 100)
    crop, factor = sample_target(image, (40, 40, 5, 5), 2.0, 32)  # side 10, x1 = round(37.5) = 38
    assert factor == 3.2
    window = image[38:48, 38:48]
    np.testing.assert_array_equal(crop, cv2.resize(window, (32, 32), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(crop, cv2.resize(window, (32, 32), interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("box", [(5, 5, 0, 4), (5, 5, 4, 0)])
def test_crop_of_empty_box_raises(box):
    with pytest.raises(ValueError, match="too small"):
        sample_target(ramp_image(), box, 4.0, 16)


def test_crop_entirely_outside_image_raises():
    with pytest.raises(ValueError, match="does not overlap"):
        sample_target(ramp_image(), (100, 5, 2, 2), 2.0, 16)


def test_normalize_crop_values_and_layout():
    crop = np.zeros((4, 4, 3), dtype=np.uint8)
    crop[..., 0] = 255
    crop[1, 2] = (0, 51, 102)
    out = normalize_crop(crop)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    assert out.shape == (3, 4, 4) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0, 0], (torch.tensor([1.0, 0.0, 0.0]) - mean) / std)
    torch.testing.assert_close(out[:, 1, 2], (torch.tensor([0.0, 0.2, 0.4]) - mean) / std)


def test_hann_window_matches_official_fixture_exactly():
    expected = torch.from_numpy(np.load(FIXTURE)["out/hann_window"][0, 0])
    assert torch.equal(hann2d(16), expected)


def test_hann_window_formula():
    window = hann2d(24)
    k = np.arange(1, 25)
    h1 = 0.5 * (1 - np.cos(2 * np.pi * k / 25))
    np.testing.assert_allclose(window.numpy(), np.outer(h1, h1), atol=1e-6)
    assert torch.equal(window, window.T) and window.min() > 0 and window.max() < 1


@pytest.mark.parametrize("as_tensor", [True, False])
def test_map_box_back(as_tensor):
    prev = (100.0, 50.0, 40.0, 20.0)  # centre (120, 60); crop half side 0.5 * 256 / 2 = 64
    centred = np.array([0.5, 0.5, 0.25, 0.125])
    shifted = np.array([0.75, 0.25, 0.5, 0.5])
    convert = (lambda a: torch.tensor(a, dtype=torch.float32)) if as_tensor else (lambda a: a)
    np.testing.assert_array_equal(map_box_back(convert(centred), prev, 2.0, 256), [104, 52, 32, 16])
    np.testing.assert_array_equal(map_box_back(convert(shifted), prev, 2.0, 256), [120, -4, 64, 64])


@pytest.mark.parametrize("box, expected", [
    ((-5, 70, 20, 30), (0, 70, 15, 10)),  # left and bottom clipped, h forced to the margin
    ((120, 10, 5, 5), (90, 10, 10, 10)),  # entirely right of the image: pulled back in
    ((50, 50, 2, 2), (50, 50, 10, 10)),  # tiny box grows to the margin
    ((20.5, 30.25, 40, 20), (20.5, 30.25, 40, 20)),  # inside: unchanged
])
def test_clip_box(box, expected):
    np.testing.assert_array_equal(clip_box(box, 80, 100), expected)


def test_clip_box_margin():
    np.testing.assert_array_equal(clip_box((98, -3, 1, 4), 80, 100, margin=0), (98, 0, 1, 1))
