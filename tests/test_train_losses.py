"""Targets and losses against hand-computed values; where the box loss is taken (defect 13)."""
from __future__ import annotations

import math

import pytest
import torch

from spiketrack.train.config import LossConfig
from spiketrack.models.head import boxes_at
from spiketrack.train.losses import focal_loss, generalized_iou, peak_index, tracking_loss
from spiketrack.train.targets import (center_index, cxcywh_to_xyxy, gaussian_heatmap, gaussian_radius,
                                      xywh_to_xyxy)


def test_focal_loss_on_a_2x2_map():
    pred = torch.tensor([[[[0.9, 0.2], [0.1, 0.5]]]])
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    expected = -(math.log(0.9) * 0.1 ** 2                     # positive cell
                 + math.log(0.8) * 0.2 ** 2 * 0.5 ** 4        # negatives weighted by (1 - gt)^4
                 + math.log(0.9) * 0.1 ** 2 * 1.0
                 + math.log(0.5) * 0.5 ** 2 * 1.0)            # / 1 positive
    assert focal_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_focal_loss_normalises_by_positives_and_not_without_them():
    pred = torch.full((2, 1, 2, 2), 0.5)
    target = torch.zeros(2, 1, 2, 2)
    neg_only = focal_loss(pred, target).item()
    assert neg_only == pytest.approx(-8 * math.log(0.5) * 0.25)
    target[0, 0, 0, 0] = target[1, 0, 1, 1] = 1
    both = focal_loss(pred, target).item()
    assert both == pytest.approx(-(2 * math.log(0.5) * 0.25 + 6 * math.log(0.5) * 0.25) / 2)


def test_generalized_iou_of_known_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0], [1.0, 1.0, 3.0, 2.0]])
    giou, iou = generalized_iou(a, b)
    assert iou.tolist() == pytest.approx([1 / 7, 0.0, 1.0])
    assert giou.tolist() == pytest.approx([1 / 7 - 2 / 9, -1 / 3, 1.0])


def test_box_conversions():
    assert xywh_to_xyxy(torch.tensor([1.0, 2.0, 3.0, 4.0])).tolist() == [1, 2, 4, 6]
    assert cxcywh_to_xyxy(torch.tensor([2.0, 3.0, 2.0, 4.0])).tolist() == [1, 1, 3, 5]


def test_gaussian_radius_matches_the_cornernet_formula():
    # w = h = 4 cells, min_overlap 0.7: the third root is the smallest, (-11.2 + sqrt(179.2)) / 2.
    r = gaussian_radius(torch.tensor([4.0]), torch.tensor([4.0]))
    assert r.item() == pytest.approx((-11.2 + math.sqrt(179.2)) / 2, rel=1e-5)


def test_small_box_heatmap_is_a_single_peak():
    boxes = torch.tensor([[0.3, 0.4, 0.25, 0.25]])  # centre (0.425, 0.525) * 8 -> cell (3.4, 4.2) -> (3, 4)
    heat = gaussian_heatmap(boxes, 8)
    assert heat.shape == (1, 1, 8, 8)
    assert heat[0, 0, 4, 3] == 1 and heat.sum() == 1  # radius int(0.55) = 0
    assert center_index(boxes, 8).item() == 4 * 8 + 3


def test_larger_box_heatmap_has_radius_one_gaussian():
    heat = gaussian_heatmap(torch.tensor([[0.25, 0.25, 0.5, 0.5]]), 8)[0, 0]  # centre cell (4, 4), r = 1
    sigma = 3 / 6
    assert heat[4, 4] == 1
    assert heat[4, 5].item() == pytest.approx(math.exp(-1 / (2 * sigma ** 2)))
    assert heat[3, 3].item() == pytest.approx(math.exp(-2 / (2 * sigma ** 2)))
    assert heat[4, 6] == 0 and heat[2, 4] == 0
    assert (heat > 0).sum() == 9


def test_centre_on_the_far_border_is_clamped_for_the_box_loss():
    boxes = torch.tensor([[0.9, 0.0, 0.1, 0.05]])  # centre x 0.95 * 8 = 7.6 -> cell 8 (off the grid)
    assert gaussian_heatmap(boxes, 8).max() < 1
    assert center_index(boxes, 8).item() == 0 * 8 + 7


def _outputs(peak_cell: tuple[int, int], gt_cell: tuple[int, int], f: int = 8) -> dict[str, torch.Tensor]:
    """Score peaking at `peak_cell`; size/offset exact at `gt_cell`, wrong everywhere else."""
    score = torch.full((1, 1, f, f), 0.1)
    score[0, 0, peak_cell[1], peak_cell[0]] = 0.9
    size = torch.full((1, 2, f, f), 0.05)
    offset = torch.zeros(1, 2, f, f)
    size[0, :, gt_cell[1], gt_cell[0]] = torch.tensor([0.25, 0.125])
    offset[0, :, gt_cell[1], gt_cell[0]] = torch.tensor([0.25, -0.25])
    return {"score_map": score, "size_map": size, "offset_map": offset}


def test_box_loss_is_taken_at_the_gt_centre_or_the_predicted_peak():
    f = 8
    cx, cy = (2 + 0.25) / f, (5 - 0.25) / f  # GT centre in cell (2, 5) with offset (0.25, -0.25)
    gt = torch.tensor([[cx - 0.125, cy - 0.0625, 0.25, 0.125]])
    outputs = _outputs(peak_cell=(6, 1), gt_cell=(2, 5))
    assert boxes_at(outputs["size_map"], outputs["offset_map"], center_index(gt, f)).tolist()[0] == \
        pytest.approx([cx, cy, 0.25, 0.125])
    at_gt = tracking_loss(outputs, gt, LossConfig(box_loss_at="gt_center"))
    assert at_gt.giou.item() == pytest.approx(0.0, abs=1e-6) and at_gt.l1.item() == pytest.approx(0.0, abs=1e-7)
    assert at_gt.iou.item() == pytest.approx(1.0)
    at_peak = tracking_loss(outputs, gt, LossConfig(box_loss_at="pred_peak"))
    assert peak_index(outputs["score_map"]).item() == 1 * f + 6
    assert at_peak.giou.item() > 1.0 and at_peak.l1.item() > 0.1
    assert at_peak.focal.item() == pytest.approx(at_gt.focal.item())


def test_total_is_the_weighted_sum_and_backpropagates():
    outputs = {k: v.requires_grad_() for k, v in _outputs((6, 1), (2, 5)).items()}
    gt = torch.tensor([[0.1, 0.2, 0.3, 0.3]])
    terms = tracking_loss(outputs, gt, LossConfig(giou_weight=2, l1_weight=5, focal_weight=1))
    assert terms.total.item() == pytest.approx(2 * terms.giou.item() + 5 * terms.l1.item() + terms.focal.item())
    terms.total.backward()
    assert all(v.grad is not None for v in outputs.values())
    assert set(terms.as_floats()) == {"total", "giou", "l1", "focal", "iou"}


def test_diverged_prediction_raises():
    outputs = _outputs((6, 1), (2, 5))
    outputs["offset_map"][:] = float("nan")
    with pytest.raises(FloatingPointError):
        tracking_loss(outputs, torch.tensor([[0.1, 0.2, 0.3, 0.3]]), LossConfig())
