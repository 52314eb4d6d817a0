"""Training pairs: still-image synthesis (determinism, box validity), crop/augmentation geometry,
sequence sampling and the skipping of broken sequences and frames."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from spiketrack.errors import UserError
from spiketrack.train.config import AugmentConfig, JitterConfig, SyntheticConfig
from spiketrack.tracker.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from spiketrack.train.data import (PairDataset, RawPair, SequencePairs, SyntheticPairs, bundled_images,
                                   load_sequences, object_mask, order_frame_ids, paste, process_pair)

S = 64


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [im for _, im in bundled_images()]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bundled_images_load_offline(images):
    assert len(images) >= 10
    for im in images:
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 and max(im.shape[:2]) <= 640


def test_synthetic_pairs_are_deterministic_and_valid(images):
    source = SyntheticPairs(images, 2, SyntheticConfig(occlusion_prob=1.0, blur_prob=1.0))
    a = source.sample(np.random.default_rng(7))
    b = source.sample(np.random.default_rng(7))
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames)) and np.array_equal(a.boxes, b.boxes)
    assert len(a.frames) == 3 and a.boxes.shape == (3, 4)
    for seed in range(20):
        raw = source.sample(np.random.default_rng(seed))
        for frame, box in zip(raw.frames, raw.boxes):
            h, w = frame.shape[:2]
            cx, cy = box[:2] + box[2:] / 2
            assert np.isfinite(box).all() and (box[2:] > 0).all()
            assert -1e-6 <= cx <= w + 1e-6 and -1e-6 <= cy <= h + 1e-6


def test_pasted_objects_sit_in_their_boxes_and_move_apart_from_the_background():
    black, white = np.zeros((200, 300, 3), np.uint8), np.full((200, 300, 3), 255, np.uint8)
    source = SyntheticPairs([black, white], 1, SyntheticConfig(paste_prob=1.0, occlusion_prob=0.0, blur_prob=0.0,
                                                               color_jitter=0.0, max_rotation=0.0))
    contrasted = 0
    for seed in range(20):
        raw = source.sample(np.random.default_rng(seed))
        centres = [frame[int(b[1] + b[3] / 2), int(b[0] + b[2] / 2)] for frame, b in zip(raw.frames, raw.boxes)]
        assert (centres[0] == centres[1]).all()  # the box follows the patch
        assert not np.allclose(raw.boxes[0], raw.boxes[1])
        x, y = int(raw.boxes[1][0] + raw.boxes[1][2] / 2), int(raw.boxes[1][1] + raw.boxes[1][3] / 2)
        if (centres[1] == 255).all() and (raw.frames[1][y, :] == 0).any():
            contrasted += 1  # a white patch on the black scene
    assert contrasted > 0


def test_paste_blends_the_patch_into_the_box_only():
    frame = np.zeros((20, 30, 3), np.uint8)
    patch = np.full((4, 6, 3), 200, np.uint8)
    out = paste(frame, patch, np.ones((4, 6, 1), np.float32), np.array([10.0, 5.0, 6.0, 4.0]))
    assert (out[5:9, 10:16] == 200).all() and out.sum() == 200 * 3 * 24 and frame.sum() == 0
    edge = paste(frame, patch, np.ones((4, 6, 1), np.float32), np.array([27.0, 18.0, 6.0, 4.0]))  # cut off
    assert (edge[18:20, 27:30] == 200).all() and edge.sum() == 200 * 3 * 6
    ellipse = object_mask(9, 7, np.random.default_rng(1))
    assert ellipse.shape == (7, 9, 1) and 0.0 <= ellipse.min() and ellipse.max() <= 1.0


def test_dataset_samples_depend_only_on_seed_epoch_index(images):
    dataset = PairDataset([SyntheticPairs(images, 1, SyntheticConfig())], [1.0], AugmentConfig(), S, 16, seed=3)
    first = dataset[5]
    assert first[0].shape == (1, 3, S, S) and first[1].shape == (3, S, S) and first[2].shape == (4,)
    assert first[0].dtype == first[1].dtype == first[2].dtype == torch.float32
    assert all(torch.equal(x, y) for x, y in zip(first, dataset[5]))
    assert not torch.equal(first[1], dataset[6][1])
    dataset.set_epoch(1)
    assert not torch.equal(first[1], dataset[5][1])
    dataset.set_epoch(0)
    assert all(torch.equal(x, y) for x, y in zip(first, dataset[5]))


def test_search_gt_centre_lies_in_the_crop(images):
    dataset = PairDataset([SyntheticPairs(images, 1, SyntheticConfig())], [1.0], AugmentConfig(), S, 40, seed=0)
    gts = torch.stack([dataset[i][2] for i in range(40)])
    centres = gts[:, :2] + gts[:, 2:] / 2
    assert ((centres >= 0) & (centres <= 1)).all() and (gts[:, 2:] > 0).all()


def _square_scene() -> RawPair:
    """Gray frames with a white 30x20 rectangle: at (100, 60) in the template, (140, 90) in the search."""
    frames, boxes = [], []
    for x, y in ((100, 60), (140, 90)):
        frame = np.full((240, 320, 3), 60, np.uint8)
        frame[y:y + 20, x:x + 30] = 255
        frames.append(frame)
        boxes.append([x, y, 30, 20])
    return RawPair(tuple(frames), np.array(boxes, dtype=np.float64))


def _bright_box(crop: torch.Tensor) -> np.ndarray:
    """Normalised (by S - 1) x, y, w, h of the white pixels of a normalised crop."""
    red = crop[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    ys, xs = np.nonzero((red > 0.9).numpy())
    return np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]) / (S - 1)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_gt_box_matches_the_object_in_the_search_crop(flip):
    aug = AugmentConfig(search_jitter=JitterConfig(1.5, 0.2), joint_flip_prob=flip, set_flip_prob=0.0,
                        brightness=0.0, grayscale_prob=0.0)
    for seed in range(8):
        out = process_pair(_square_scene(), aug, S, np.random.default_rng(seed))
        if out is None:
            continue
        templates, search, gt = out
        assert np.abs(_bright_box(search) - gt.numpy()).max() < 2.5 / (S - 1)
        template_box = _bright_box(templates[0])  # no template jitter: object centred
        assert np.abs(template_box[:2] + template_box[2:] / 2 - 0.5).max() < 2 / (S - 1)


def test_grayscale_makes_channels_equal():
    aug = AugmentConfig(grayscale_prob=1.0, brightness=0.0)
    raw = _square_scene()
    raw = RawPair(tuple(np.ascontiguousarray(f * np.array([1.0, 0.5, 0.2])).astype(np.uint8) for f in raw.frames),
                  raw.boxes)
    _, search, _ = process_pair(raw, aug, S, np.random.default_rng(0))
    rgb = search * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    assert torch.allclose(rgb[0], rgb[1], atol=1e-5) and torch.allclose(rgb[1], rgb[2], atol=1e-5)


def test_order_sampler_stays_within_the_gap_and_is_sorted():
    visible = np.array([0, 1, 2, 5, 9, 40, 41, 100])
    for seed in range(50):
        ids = order_frame_ids(visible, 4, 10, np.random.default_rng(seed))
        assert len(ids) == 4 and set(ids.tolist()) <= set(visible.tolist())
        assert ids.max() - ids.min() <= 20
        assert (np.diff(ids) >= 0).all() or (np.diff(ids) <= 0).all()


def _write_otb_sequence(root: Path, name: str, n: int, boxes: list[str] | None = None) -> Path:
    folder = root / name / "img"
    folder.mkdir(parents=True)
    for i in range(n):
        frame = np.full((120, 160, 3), 40 + i, np.uint8)
        frame[40:70, 50 + i:90 + i] = 230
        cv2.imwrite(str(folder / f"{i + 1:04d}.jpg"), frame)
    lines = boxes if boxes is not None else [f"{50 + i},40,40,30" for i in range(n)]
    (root / name / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    return root / name


def test_broken_sequences_are_skipped_with_a_warning(tmp_path):
    _write_otb_sequence(tmp_path, "good_a", 4)
    _write_otb_sequence(tmp_path, "good_b", 3)
    _write_otb_sequence(tmp_path, "short_gt", 4, ["50,40,40,30"] * 3)  # a frame without annotation
    _write_otb_sequence(tmp_path, "all_nan", 3, ["NaN,NaN,NaN,NaN"] * 3)
    with pytest.warns(UserWarning) as record:
        sequences = load_sequences("otb", tmp_path)
    assert [s.name for s in sequences] == ["good_a", "good_b"]
    messages = " ".join(str(w.message) for w in record)
    assert "short_gt" in messages and "all_nan" in messages


def test_no_usable_sequence_is_a_user_error(tmp_path):
    _write_otb_sequence(tmp_path, "all_nan", 3, ["NaN,NaN,NaN,NaN"] * 3)
    with pytest.warns(UserWarning), pytest.raises(UserError, match="no usable otb sequences"):
        load_sequences("otb", tmp_path)


def test_sequence_pairs_and_unreadable_frames(tmp_path):
    _write_otb_sequence(tmp_path, "seq", 4)
    source = SequencePairs(load_sequences("otb", tmp_path), 1, max_gap=2)
    raw = source.sample(np.random.default_rng(0))
    assert len(raw.frames) == 2 and raw.frames[0].shape == (120, 160, 3)
    dataset = PairDataset([source], [1.0], AugmentConfig(), S, 4, seed=0)
    assert dataset[0][1].shape == (3, S, S)
    for frame in source.sequences[0].frames[:3]:
        frame.write_bytes(b"not a jpeg")  # corrupted after loading: found mid-epoch
    with pytest.warns(UserWarning, match="sequence seq"):
        results = [source.sample(np.random.default_rng(seed)) for seed in range(10)]
    assert any(r is None for r in results)
    with pytest.warns(UserWarning, match="cannot decode image"):
        assert dataset[1][1].shape == (3, S, S)  # redraws until a readable pair turns up


def test_sources_are_drawn_by_weight(images):
    class Tagged:
        def __init__(self, value: int):
            self.value = value

        def sample(self, rng):
            frame = np.full((100, 100, 3), self.value, np.uint8)
            return RawPair((frame, frame), np.array([[40.0, 40, 20, 20]] * 2))

    aug = replace(AugmentConfig(), brightness=0.0, search_jitter=JitterConfig(0.0, 0.0))
    dataset = PairDataset([Tagged(10), Tagged(200)], [3.0, 1.0], aug, 16, 200, seed=0)
    bright = sum(float(dataset[i][1].mean()) > 0 for i in range(200))
    assert 30 < bright < 70  # ~ 1/4 of the draws


def test_distractors_are_pasted_near_the_object_but_not_on_its_centre():
    source = SyntheticPairs([np.full((50, 50, 3), 255, np.uint8)], 1, SyntheticConfig(max_distractors=2))
    box = np.array([180.0, 130.0, 40.0, 40.0])  # centre (200, 150), size 40
    for seed in range(5):
        frame = source._distractor(np.zeros((300, 400, 3), np.uint8), box, np.random.default_rng(seed))
        ys, xs = np.nonzero(frame[:, :, 0] > 128)
        assert len(xs) > 0 and frame[150, 200, 0] == 0
        distance = np.hypot(xs.mean() - 200, ys.mean() - 150) / 40
        assert 0.5 < distance < 2.5
