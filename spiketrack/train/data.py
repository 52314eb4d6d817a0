"""Training pairs: T template crops + 1 search crop with the search GT box, from tracking datasets
(GOT-10k, LaSOT, OTB/UAV123 layouts) or synthesised from still images shipped with installed packages.

Every sample is a pure function of (seed, epoch, index), so runs are reproducible whatever the number
of loader workers or processes. GT boxes are normalised top-left `x, y, w, h` in search-crop
coordinates, divided by `S - 1` as in the official pipeline (spec §11, defect 10).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence as Seq

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from spiketrack.data.datasets import (sequence_folders, load_got10k_sequence, load_lasot_sequence,
                                      load_otb_sequence)
from spiketrack.data.images import read_image
from spiketrack.data.package_images import SKLEARN_SAMPLES, STEREO_MOTORCYCLE, package_images
from spiketrack.data.sequence import Sequence
from spiketrack.errors import UserError
from spiketrack.models.config import get_config
from spiketrack.tracker.preprocessing import normalize_crop, sample_target

from .config import AugmentConfig, JitterConfig, SyntheticConfig, TrainConfig

MAX_DRAWS = 100  # attempts per sample before giving up (invalid crops, unreadable frames)
MIN_VISIBLE = 2  # a sequence needs this many frames with a visible target
SYNTHETIC_MAX_SIDE = 640  # bundled images are downscaled to this longest side
_SEQUENCE_LOADERS: dict[str, Callable[[Path], Sequence]] = {
    "otb": load_otb_sequence, "lasot": load_lasot_sequence, "got10k": load_got10k_sequence}
# Natural-looking images bundled in the scikit-image wheel (no download) and scikit-learn.
_SYNTHETIC_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "hubble_deep_field",
                     "immunohistochemistry", "grass", "gravel", "brick", "moon", "clock", STEREO_MOTORCYCLE,
                     SKLEARN_SAMPLES)


@dataclass(frozen=True)
class RawPair:
    """Full frames (T templates, then the search frame) with their pixel `x, y, w, h` boxes (T+1, 4)."""

    frames: tuple[np.ndarray, ...]
    boxes: np.ndarray


class PairSource(Protocol):
    """Anything that draws raw template/search frames; None means 'this draw failed, draw again'."""

    def sample(self, rng: np.random.Generator) -> RawPair | None: ...


# ---------------------------------------------------------------- sequence datasets

def visible_frames(seq: Sequence) -> np.ndarray:
    """Indices of frames whose target is present with a finite, positive-size box."""
    gt = seq.ground_truth
    ok = ~seq.absent & np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    return np.flatnonzero(ok)


def order_frame_ids(visible: np.ndarray, count: int, max_gap: int, rng: np.random.Generator) -> np.ndarray:
    """Official 'order' sampler: a visible base frame, `count` visible frames (with replacement) within
    +- max_gap of it, sorted ascending or descending with p = 0.5; the last one is the search frame.
    (The window always contains the base frame, so the official gap growth never triggers.)"""
    base = visible[rng.integers(len(visible))]
    window = visible[np.abs(visible - base) <= max_gap]
    ids = np.sort(window[rng.integers(len(window), size=count)])
    return ids[::-1] if rng.random() < 0.5 else ids


def load_sequences(kind: str, root: Path) -> list[Sequence]:
    """Every usable sequence under `root`; broken ones (missing frames, bad annotations, too few visible
    frames) are skipped with a warning naming them. UserError if none is usable."""
    loader = _SEQUENCE_LOADERS[kind]
    if not root.is_dir():
        raise UserError("no such dataset folder", root)
    usable = []
    for folder in sequence_folders(root):
        try:
            seq = loader(folder)
        except UserError as exc:
            warnings.warn(f"skipping sequence {folder.name}: {exc}", stacklevel=2)
            continue
        if len(visible_frames(seq)) < MIN_VISIBLE:
            warnings.warn(f"skipping sequence {seq.name}: fewer than {MIN_VISIBLE} frames with a visible target",
                          stacklevel=2)
            continue
        usable.append(seq)
    if not usable:
        raise UserError(f"no usable {kind} sequences found", root)
    return usable


class SequencePairs:
    """Pairs from annotated videos: a random sequence, frames chosen by the 'order' sampler."""

    def __init__(self, sequences: Seq[Sequence], num_templates: int, max_gap: int):
        self.sequences = list(sequences)
        self.visible = [visible_frames(s) for s in self.sequences]
        self.num_templates = num_templates
        self.max_gap = max_gap

    def sample(self, rng: np.random.Generator) -> RawPair | None:
        """One draw; an unreadable frame gives a warning naming it and None."""
        k = int(rng.integers(len(self.sequences)))
        seq = self.sequences[k]
        ids = order_frame_ids(self.visible[k], self.num_templates + 1, self.max_gap, rng)
        try:
            images = {i: read_image(seq.frames[i]) for i in sorted(set(ids.tolist()))}
        except UserError as exc:
            warnings.warn(f"skipping a pair of sequence {seq.name}: {exc}", stacklevel=2)
            return None
        return RawPair(tuple(images[i] for i in ids.tolist()), seq.ground_truth[ids].astype(np.float64))


# ---------------------------------------------------------------- still-image synthesis

def bundled_images(max_side: int = SYNTHETIC_MAX_SIDE) -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8) training images installed with scikit-image and scikit-learn, longest side <= max_side."""
    return list(package_images(_SYNTHETIC_IMAGES, max_side).items())


def random_object_box(height: int, width: int, cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """A random `x, y, w, h` box inside the image: size and aspect drawn from the config."""
    side = rng.uniform(*cfg.object_size) * min(height, width)
    aspect = math.exp(rng.uniform(-1, 1) * math.log(cfg.max_aspect))
    w = min(side * math.sqrt(aspect), width - 1.0)
    h = min(side / math.sqrt(aspect), height - 1.0)
    return np.array([rng.uniform(0, width - w), rng.uniform(0, height - h), w, h])


def random_motion(box: np.ndarray, shape: tuple[int, int], cfg: SyntheticConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Affine map (2x3) about the box centre: zoom, aspect change, rotation, shift (centre kept inside
    the frame), and the axis-aligned box around the moved corners."""
    height, width = shape
    centre = box[:2] + box[2:] / 2
    zoom = math.exp(rng.normal() * cfg.scale_sigma)
    aspect = math.exp(rng.normal() * cfg.aspect_sigma)
    angle = math.radians(rng.uniform(-1, 1) * cfg.max_rotation)
    shift = rng.uniform(-1, 1, size=2) * cfg.shift * math.sqrt(box[2] * box[3])
    new_centre = np.clip(centre + shift, 0, [width - 1, height - 1])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = rotation @ np.diag([zoom * math.sqrt(aspect), zoom / math.sqrt(aspect)])
    matrix = np.hstack([linear, (new_centre - linear @ centre)[:, None]])
    corners = np.array([[box[0], box[1]], [box[0] + box[2], box[1]],
                        [box[0], box[1] + box[3]], [box[0] + box[2], box[1] + box[3]]])
    moved = corners @ linear.T + matrix[:, 2]
    low, high = moved.min(axis=0), moved.max(axis=0)
    return matrix, np.concatenate([low, high - low])


def occlude(frame: np.ndarray, box: np.ndarray, source: np.ndarray, max_fraction: float,
            rng: np.random.Generator) -> np.ndarray:
    """Paste a rectangle cut from `source` over part of the object (area up to max_fraction of it)."""
    area = rng.uniform(0, max_fraction) * box[2] * box[3]
    aspect = math.exp(rng.uniform(-1, 1) * math.log(2))
    ow = max(1, min(round(math.sqrt(area * aspect)), source.shape[1]))
    oh = max(1, min(round(math.sqrt(area / aspect)), source.shape[0]))
    sy, sx = rng.integers(source.shape[0] - oh + 1), rng.integers(source.shape[1] - ow + 1)
    cx, cy = box[0] + rng.uniform(0, box[2]), box[1] + rng.uniform(0, box[3])
    placed = np.array([round(cx - ow / 2), round(cy - oh / 2), ow, oh], dtype=np.float64)
    return paste(frame, source[sy:sy + oh, sx:sx + ow], np.ones((oh, ow, 1), np.float32), placed)


def cut_patch(source: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A random region of `source` (aspect of width x height, at least a quarter of its short side)
    resized to height x width."""
    side = rng.uniform(0.25, 1.0) * min(source.shape[:2])
    aspect = width / height
    pw = max(1, min(round(side * math.sqrt(aspect)), source.shape[1]))
    ph = max(1, min(round(side / math.sqrt(aspect)), source.shape[0]))
    y, x = rng.integers(source.shape[0] - ph + 1), rng.integers(source.shape[1] - pw + 1)
    return cv2.resize(source[y:y + ph, x:x + pw], (width, height), interpolation=cv2.INTER_AREA)


def object_mask(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 1) float alpha of a pasted object: a full rectangle or an ellipse filling the
    box (p = 0.5), edges softened by a small blur."""
    mask = np.ones((height, width), np.float32)
    if rng.random() < 0.5:
        y, x = np.mgrid[:height, :width]
        inside = ((x + 0.5) / width - 0.5) ** 2 + ((y + 0.5) / height - 0.5) ** 2 <= 0.25
        mask = inside.astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), 0.8)[:, :, None]


def paste(frame: np.ndarray, patch: np.ndarray, mask: np.ndarray, box: np.ndarray) -> np.ndarray:
    """`patch` with alpha `mask`, resized to `box` (pixel x, y, w, h), blended onto a copy of `frame`
    (parts outside the frame are cut off)."""
    w, h = max(1, round(box[2])), max(1, round(box[3]))
    patch = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    alpha = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, 1)
    x0, y0 = round(box[0]), round(box[1])
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + w, frame.shape[1]), min(y0 + h, frame.shape[0])
    out = frame.copy()
    if fx1 > fx0 and fy1 > fy0:
        region = (slice(fy0, fy1), slice(fx0, fx1))
        src = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
        blended = alpha[src] * patch[src] + (1 - alpha[src]) * out[region].astype(np.float32)
        out[region] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


class SyntheticPairs:
    """Pairs synthesised from still images. The object is a random box of a random image that moves with
    the image (a random affine: shift, zoom, aspect, small rotation), or, with `paste_prob`, a patch cut
    from another image and pasted on it that moves on its own while the background moves a little.
    Frames are optionally blurred and colour-jittered; the search frame may get an occluding patch."""

    def __init__(self, images: Seq[np.ndarray], num_templates: int, cfg: SyntheticConfig):
        if not images:
            raise ValueError("SyntheticPairs needs at least one image")
        self.images = list(images)
        self.num_templates = num_templates
        self.cfg = cfg

    def sample(self, rng: np.random.Generator) -> RawPair:
        """One draw (never fails)."""
        image = self.images[rng.integers(len(self.images))]
        box = random_object_box(*image.shape[:2], self.cfg, rng)
        pasted = None
        if rng.random() < self.cfg.paste_prob:
            source = self.images[rng.integers(len(self.images))]
            w, h = max(1, round(box[2])), max(1, round(box[3]))
            pasted = (cut_patch(source, w, h, rng), object_mask(w, h, rng))
        frames, boxes = [], []
        for k in range(self.num_templates + 1):
            frame, moved = self._frame(image, box, pasted, rng)
            if k == self.num_templates and rng.random() < self.cfg.occlusion_prob:
                source = self.images[rng.integers(len(self.images))]
                frame = occlude(frame, moved, source, self.cfg.max_occlusion, rng)
            frames.append(frame)
            boxes.append(moved)
        return RawPair(tuple(frames), np.stack(boxes))

    def _frame(self, image: np.ndarray, box: np.ndarray, pasted: tuple[np.ndarray, np.ndarray] | None,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The scene under a random motion (with the pasted object, if any, moved on its own), blur and
        per-channel gain, and the object's box."""
        height, width = image.shape[:2]
        matrix, moved = random_motion(box, (height, width), self.cfg, rng)
        if pasted is not None:
            camera = dataclasses.replace(self.cfg, shift=self.cfg.background_shift, max_rotation=0.0)
            matrix, _ = random_motion(box, (height, width), camera, rng)  # the object keeps `moved`
        frame = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        for _ in range(rng.integers(self.cfg.max_distractors + 1)):
            frame = self._distractor(frame, moved, rng)
        if pasted is not None:
            frame = paste(frame, *pasted, moved)
        if rng.random() < self.cfg.blur_prob and self.cfg.max_blur_sigma > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.3, max(0.3, self.cfg.max_blur_sigma)))
        gain = rng.uniform(1 - self.cfg.color_jitter, 1 + self.cfg.color_jitter, size=3)
        return cv2.multiply(frame, (*gain.tolist(), 0.0)), moved  # saturating uint8 product

    def _distractor(self, frame: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`frame` with a patch of another image pasted 1 to 2 object sizes from `box` (x, y, w, h)."""
        size = box[2:] * rng.uniform(0.7, 1.4)
        angle = rng.uniform(0, 2 * math.pi)
        centre = box[:2] + box[2:] / 2 + rng.uniform(1, 2) * math.sqrt(box[2] * box[3]) * np.array(
            [math.cos(angle), math.sin(angle)])
        w, h = max(1, round(size[0])), max(1, round(size[1]))
        source = self.images[rng.integers(len(self.images))]
        return paste(frame, cut_patch(source, w, h, rng), object_mask(w, h, rng),
                     np.concatenate([centre - size / 2, size]))


# ---------------------------------------------------------------- crops and augmentation

def jitter_box(box: np.ndarray, jitter: JitterConfig, rng: np.random.Generator) -> np.ndarray:
    """Official box jitter: wh' = wh * exp(N(0,1) * scale); centre += sqrt(w'h') * center * (U(0,1) - 0.5)."""
    wh = box[2:] * np.exp(rng.standard_normal(2) * jitter.scale)
    centre = box[:2] + box[2:] / 2 + math.sqrt(wh[0] * wh[1]) * jitter.center * (rng.random(2) - 0.5)
    return np.concatenate([centre - wh / 2, wh])


def box_in_crop(box: np.ndarray, crop_box: np.ndarray, resize_factor: float, out_size: int) -> np.ndarray:
    """`box` in the crop made around `crop_box`, normalised by out_size - 1 (official transform)."""
    offset = (box[:2] + box[2:] / 2) - (crop_box[:2] + crop_box[2:] / 2)
    centre = (out_size - 1) / 2 + offset * resize_factor
    wh = box[2:] * resize_factor
    return np.concatenate([centre - wh / 2, wh]) / (out_size - 1)


def flip_box(box: np.ndarray) -> np.ndarray:
    """Normalised `x, y, w, h` after a horizontal flip of the crop."""
    return np.array([1 - box[0] - box[2], box[1], box[2], box[3]])


def to_gray(crop: np.ndarray) -> np.ndarray:
    """Grayscale copy kept as 3 identical RGB channels."""
    return cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def process_pair(raw: RawPair, aug: AugmentConfig, out_size: int,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Jitter, crop, grayscale/flip/brightness and normalise a raw pair: templates (T,3,S,S), search
    (3,S,S), search GT (4,). None if a crop is impossible or the GT centre leaves the search crop."""
    gray = rng.random() < aug.grayscale_prob
    joint_flip = rng.random() < aug.joint_flip_prob
    flips = (joint_flip ^ (rng.random() < aug.set_flip_prob), joint_flip ^ (rng.random() < aug.set_flip_prob))
    crops, gt = [], None
    last = len(raw.frames) - 1
    for k, (frame, box) in enumerate(zip(raw.frames, raw.boxes)):
        is_search = k == last
        extract = jitter_box(box, aug.search_jitter if is_search else aug.template_jitter, rng)
        if not np.isfinite(extract).all() or math.sqrt(extract[2] * extract[3]) * aug.crop_factor < 1:
            return None
        try:
            crop, resize_factor = sample_target(frame, extract, aug.crop_factor, out_size)
        except ValueError:
            return None
        gt = box_in_crop(box, extract, resize_factor, out_size)
        if gray:
            crop = to_gray(crop)
        if flips[is_search]:
            crop, gt = crop[:, ::-1], flip_box(gt)
        brightness = rng.uniform(1 - aug.brightness, 1 + aug.brightness)
        crops.append(normalize_crop(np.clip(crop.astype(np.float32) * brightness, 0, 255)))
    centre = gt[:2] + gt[2:] / 2
    if not ((centre >= 0).all() and (centre <= 1).all() and (gt[2:] > 0).all()):
        return None
    return torch.stack(crops[:-1]), crops[-1], torch.as_tensor(gt, dtype=torch.float32)


class PairDataset(Dataset):
    """`samples_per_epoch` pairs per epoch; sample `index` of epoch `e` is drawn with the generator
    seeded by (seed, e, index): a source by weight, a raw pair from it, then augmentation."""

    def __init__(self, sources: Seq[PairSource], weights: Seq[float], aug: AugmentConfig, out_size: int,
                 samples_per_epoch: int, seed: int):
        self.sources = list(sources)
        self.probs = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.aug = aug
        self.out_size = out_size
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples `__getitem__` returns (call before building the iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.pair(self.epoch, index)

    def pair(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample `index` of `epoch` (any non-negative numbers): templates (T,3,S,S), search, GT (4,)."""
        rng = np.random.default_rng([self.seed, epoch, index])
        for _ in range(MAX_DRAWS):
            raw = self.sources[rng.choice(len(self.sources), p=self.probs)].sample(rng)
            sample = None if raw is None else process_pair(raw, self.aug, self.out_size, rng)
            if sample is not None:
                return sample
        raise RuntimeError(f"no valid training pair after {MAX_DRAWS} draws (epoch {epoch}, index {index})")


def build_dataset(config: TrainConfig) -> PairDataset:
    """The dataset a training config describes, sized for its model variant (T templates, S pixels)."""
    model_cfg = get_config(config.variant)
    sources: list[PairSource] = []
    images: list[np.ndarray] | None = None
    for src in config.data.sources:
        if src.kind == "synthetic":
            images = images if images is not None else [im for _, im in bundled_images()]
            sources.append(SyntheticPairs(images, model_cfg.num_templates, config.synthetic))
        else:
            sequences = load_sequences(src.kind, src.path)
            sources.append(SequencePairs(sequences, model_cfg.num_templates, config.data.max_gap))
    return PairDataset(sources, [s.weight for s in config.data.sources], config.augment, model_cfg.search_size,
                       config.data.samples_per_epoch, config.seed)
