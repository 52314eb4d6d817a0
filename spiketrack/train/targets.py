"""Training targets on the F x F score grid: CenterNet Gaussian heatmaps and box-format conversions.

GT boxes are normalised `x, y, w, h` in search-crop coordinates (divided by `S - 1`, spec §11).
"""
from __future__ import annotations

import torch


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) top-left `x, y, w, h` -> corners `x1, y1, x2, y2`."""
    xy, wh = boxes[..., :2], boxes[..., 2:]
    return torch.cat([xy, xy + wh], dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre `cx, cy, w, h` -> corners `x1, y1, x2, y2`."""
    c, half = boxes[..., :2], boxes[..., 2:] / 2
    return torch.cat([c - half, c + half], dim=-1)


def gaussian_radius(width: torch.Tensor, height: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """CornerNet radius (in cells) such that a corner shift keeps IoU >= min_overlap.

    As in the CenterNet/OSTrack code the official model was trained with, each root of the three
    quadratics is taken as (b + sqrt(b^2 - 4ac)) / 2 (the smallest of the three is returned)."""
    area = width * height
    b1 = height + width
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * area * (1 - min_overlap) / (1 + min_overlap))) / 2
    b2 = 2 * (height + width)
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * (1 - min_overlap) * area)) / 2
    b3 = -2 * min_overlap * (height + width)
    r3 = (b3 + torch.sqrt(b3 ** 2 - 16 * min_overlap * (min_overlap - 1) * area)) / 2
    return torch.minimum(r1, torch.minimum(r2, r3))


def center_cells(boxes: torch.Tensor, feat_size: int) -> torch.Tensor:
    """(B, 2) integer grid cell `(ix, iy)` of each box centre: round((x + w/2) * F), half to even.

    May equal -1..F for centres on the crop border; the heatmap then has no peak on the grid."""
    centre = (boxes[:, :2] + boxes[:, 2:] / 2) * feat_size
    return torch.round(centre).long()


def center_index(boxes: torch.Tensor, feat_size: int) -> torch.Tensor:
    """(B,) flat index `iy * F + ix` of the GT centre cell, clamped onto the grid."""
    cells = center_cells(boxes, feat_size).clamp(0, feat_size - 1)
    return cells[:, 1] * feat_size + cells[:, 0]


def gaussian_heatmap(boxes: torch.Tensor, feat_size: int, min_overlap: float = 0.7) -> torch.Tensor:
    """(B, 1, F, F) CenterNet target: exp(-d^2 / 2 sigma^2) within the CornerNet radius r of the centre
    cell (square window), sigma = (2r + 1) / 6, exactly 1 at the centre cell."""
    grid_boxes = boxes.detach().float() * feat_size
    radius = gaussian_radius(grid_boxes[:, 2], grid_boxes[:, 3], min_overlap).clamp(min=0).long()
    sigma = (2 * radius + 1).float() / 6
    cells = center_cells(boxes.detach().float(), feat_size)
    grid = torch.arange(feat_size, device=boxes.device)
    dx = grid[None, None, :] - cells[:, 0, None, None]  # (B, 1, F): varies along x
    dy = grid[None, :, None] - cells[:, 1, None, None]  # (B, F, 1): varies along y
    r = radius[:, None, None]
    inside = (dx.abs() <= r) & (dy.abs() <= r)
    value = torch.exp(-(dx ** 2 + dy ** 2).float() / (2 * sigma[:, None, None] ** 2))
    return (value * inside)[:, None]
