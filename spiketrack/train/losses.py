"""Tracking losses: CenterNet focal loss on the score map, GIoU and L1 on the decoded box (spec §11).

The box is decoded at the ground-truth centre cell by default (defect 13 fixed, supervises size and
offset where the target is); `box_loss_at="pred_peak"` reproduces the official argmax location.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spiketrack.models.head import boxes_at

from .config import LossConfig
from .targets import center_index, cxcywh_to_xyxy, gaussian_heatmap, xywh_to_xyxy


@dataclass(frozen=True)
class LossTerms:
    """Weighted total (for backward) and its unweighted parts (scalars), plus mean IoU for the log."""

    total: torch.Tensor
    giou: torch.Tensor
    l1: torch.Tensor
    focal: torch.Tensor
    iou: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """Plain numbers for logging."""
        return {name: float(getattr(self, name).detach()) for name in ("total", "giou", "l1", "focal", "iou")}


def focal_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet focal loss summed over the batch and divided by the number of cells where target == 1
    (no division when there are none). `pred` must already lie in (0, 1)."""
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** alpha * pos
    neg_loss = torch.log(1 - pred) * pred ** alpha * (1 - target) ** beta * neg
    num_pos = pos.sum()
    total = -(pos_loss.sum() + neg_loss.sum())
    return total / num_pos if num_pos > 0 else total


def generalized_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise (GIoU, IoU), each (N,), of two (N, 4) xyxy box sets."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    inter_wh = (torch.minimum(boxes1[:, 2:], boxes2[:, 2:]) - torch.maximum(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    inter = inter_wh[:, 0] * inter_wh[:, 1]
    union = area1 + area2 - inter
    iou = inter / union
    hull_wh = (torch.maximum(boxes1[:, 2:], boxes2[:, 2:]) - torch.minimum(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    hull = hull_wh[:, 0] * hull_wh[:, 1]
    return iou - (hull - union) / hull, iou


def peak_index(score_map: torch.Tensor) -> torch.Tensor:
    """(B,) flat index of the first maximum of a (B, 1, F, F) score map (the official `cal_bbox`)."""
    return score_map.flatten(1).argmax(dim=1)


def tracking_loss(outputs: dict[str, torch.Tensor], gt_boxes: torch.Tensor, cfg: LossConfig) -> LossTerms:
    """Loss of one batch: model outputs (score/size/offset maps) against GT normalised xywh boxes (B, 4)."""
    score = outputs["score_map"]
    feat_size = score.shape[-1]
    heatmap = gaussian_heatmap(gt_boxes, feat_size)
    focal = focal_loss(score, heatmap.to(score.dtype))
    if cfg.box_loss_at == "gt_center":
        index = center_index(gt_boxes, feat_size)
    else:
        index = peak_index(score.detach())
    pred = cxcywh_to_xyxy(boxes_at(outputs["size_map"], outputs["offset_map"], index))
    if not torch.isfinite(pred).all():
        raise FloatingPointError("predicted boxes contain NaN or inf (training diverged)")
    target = xywh_to_xyxy(gt_boxes.to(pred.dtype)).clamp(0.0, 1.0)
    giou, iou = generalized_iou(pred, target)
    giou_loss = (1 - giou).mean()
    l1 = F.l1_loss(pred, target)
    total = cfg.giou_weight * giou_loss + cfg.l1_weight * l1 + cfg.focal_weight * focal
    return LossTerms(total=total, giou=giou_loss, l1=l1, focal=focal, iou=iou.detach().mean())
