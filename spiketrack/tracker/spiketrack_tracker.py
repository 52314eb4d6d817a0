"""SpikeTrack test-time tracker (pytracking interface), as the official `spiketrack_inf` (§10)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from spiketrack.errors import UserError
from spiketrack.models.head import decode_boxes
from spiketrack.tracker.preprocessing import (check_init_box, clip_box, hann2d, map_box_back,
                                              normalize_crop, sample_target)

CLIP_MARGIN = 10


@dataclass(frozen=True)
class TrackerParams:
    """Test-time settings; the defaults are the official hard-coded values (non-LaSOT datasets)."""

    template_size: int = 256
    search_size: int = 256
    num_templates: int = 1
    template_factor: float = 4.0
    search_factor: float = 4.0
    update_interval: int = 25
    update_threshold: float = 0.7
    use_hann_window: bool = True

    @classmethod
    def from_model_cfg(cls, cfg: Any) -> TrackerParams:
        """Crop sizes and template count of the model config (`search_size`, `num_templates`)."""
        return cls(template_size=cfg.search_size, search_size=cfg.search_size,
                   num_templates=cfg.num_templates)

    def for_dataset(self, name: str) -> TrackerParams:
        """Copy with the official update schedule: 'lasot' in the name → 0.8 / 40, else 0.7 / 25."""
        if "lasot" in name.lower():
            return dataclasses.replace(self, update_threshold=0.8, update_interval=40)
        return dataclasses.replace(self, update_threshold=0.7, update_interval=25)


def update_template_list(templates: Sequence[Any], new: Any, max_len: int) -> list[Any]:
    """Append `new`; when the list is full, first drop index 1 (index 0, the initial template, stays)."""
    if max_len < 2:
        raise ValueError(f"template update needs at least 2 templates, got {max_len}")
    kept = list(templates)
    if len(kept) >= max_len:
        del kept[1]
    return kept + [new]


def check_image(image: np.ndarray) -> None:
    """UserError unless `image` is an RGB uint8 array (H, W, 3)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UserError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")


class SpikeTrackTracker:
    """Single-object tracker: `initialize(image, box)` once, then `track(image)` per frame.

    Templates are encoded once (and after each update) into cached memories; each frame runs only
    the search path. Everything runs on the device and dtype of the model's parameters."""

    def __init__(self, model: torch.nn.Module, params: TrackerParams | None = None):
        self.model = model.eval()
        self.params = TrackerParams.from_model_cfg(model.cfg) if params is None else params
        cfg = model.cfg
        if (self.params.search_size, self.params.template_size, self.params.num_templates) != (
                cfg.search_size, cfg.search_size, cfg.num_templates):
            raise ValueError(f"tracker params {self.params} do not match the model "
                             f"(search_size {cfg.search_size}, num_templates {cfg.num_templates})")
        weight = next(model.parameters())
        self.device, self.dtype = weight.device, weight.dtype
        self.window = (hann2d(cfg.feat_size).to(self.device, self.dtype)
                       if self.params.use_hann_window else None)
        self.state: np.ndarray | None = None
        self.frame_id = 0
        self.templates: list[torch.Tensor] = []
        self.memories: list[torch.Tensor] = []

    def initialize(self, image: np.ndarray, box: Sequence[float]) -> None:
        """Crop the template around `box` (x, y, w, h), fill the template list with it and encode it."""
        check_image(image)
        self.state = check_init_box(box, *image.shape[:2])
        template = self._crop(image, self.params.template_factor, self.params.template_size)[0]
        self.templates = [template] * self.params.num_templates
        self.memories = self._encode(self.templates)
        self.frame_id = 0

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Locate the target in `image`; returns the box (x, y, w, h) and the Hann-windowed peak."""
        if self.state is None:
            raise RuntimeError("track() called before initialize()")
        check_image(image)
        self.frame_id += 1
        search, resize_factor = self._crop(image, self.params.search_factor, self.params.search_size)
        with torch.inference_mode():
            out = self.model.track_step(search[None], self.memories)
            response = out["score_map"] if self.window is None else self.window * out["score_map"]
            boxes, scores = decode_boxes(response, out["size_map"], out["offset_map"])
            box = map_box_back(boxes[0], self.state, resize_factor, self.params.search_size)
        conf = float(scores[0])
        self.state = clip_box(box, *image.shape[:2], margin=CLIP_MARGIN)
        if self._update_due(conf):
            template = self._crop(image, self.params.template_factor, self.params.template_size)[0]
            self.templates = update_template_list(self.templates, template, self.params.num_templates)
            self.memories = self._encode(self.templates)
        return self.state.copy(), conf

    def _update_due(self, conf: float) -> bool:
        """Official rule: T > 1, every `update_interval` frames, windowed confidence > threshold."""
        p = self.params
        due = p.num_templates > 1 and self.frame_id % p.update_interval == 0
        return due and conf > p.update_threshold

    def _crop(self, image: np.ndarray, factor: float, size: int) -> tuple[torch.Tensor, float]:
        """Normalised crop (1, 3, S, S) around the current state, on the model's device and dtype,
        and its resize factor."""
        crop, resize_factor = sample_target(image, self.state, factor, size)
        return normalize_crop(crop).to(self.device, self.dtype)[None], resize_factor

    def _encode(self, templates: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run the template encoder on the stacked list (T, 1, 3, S, S) → cached memories."""
        with torch.inference_mode():
            return self.model.encode_templates(torch.stack(templates))
