"""One-pass evaluation (OPE): success, precision and normalized precision of box predictions.

Conventions (those of pytracking's `extract_results`, which match the OTB, UAV123 and LaSOT toolkits):
* IoU of `x,y,w,h` boxes with continuous coordinates (identical to pytracking's `+1/-1` pixel formula).
* Centers are `x + w/2, y + h/2`; the normalized center error divides the x and y offsets by the
  ground-truth w and h before taking the distance (LaSOT / TrackingNet).
* Success curve: fraction of valid frames with IoU **>** t for t in `linspace(0, 1, 21)`; AUC is its
  mean, so a perfect tracker scores 20/21 (IoU > 1 never holds), exactly as pytracking and OTB report.
* Precision curve: fraction of valid frames with center error **<=** t px, t = 0..50 (51 points);
  P@20 is its value at 20 px. Normalized precision: error <= t for t in `linspace(0, 0.5, 51)`;
  the reported value is the one at 0.2 (pytracking's "Norm Precision").
* Valid frames: ground truth finite with w > 0 and h > 0 and the target not flagged absent. Invalid
  frames are left out of numerator and denominator (pytracking's `exclude_invalid_frames=True`, the
  UAV123/LaSOT practice of skipping frames without a visible target).
* The first frame is evaluated like any other (pytracking and OTB do); the runner writes the
  initialisation box there. A predicted box with NaN or w, h <= 0 is a failure (IoU 0, error inf).
* A tracker's curves are the mean of its per-sequence curves (sequences with no valid frame skipped).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from spiketrack.data.datasets import parse_boxes
from spiketrack.data.sequence import Sequence
from spiketrack.errors import UserError
from spiketrack.utils.atomic import atomic_path

OVERLAP_THRESHOLDS = np.linspace(0.0, 1.0, 21)
CENTER_THRESHOLDS = np.arange(51, dtype=np.float64)
NORM_CENTER_THRESHOLDS = np.linspace(0.0, 0.5, 51)
PRECISION_INDEX = 20  # CENTER_THRESHOLDS[20] == 20 px
NORM_PRECISION_INDEX = 20  # NORM_CENTER_THRESHOLDS[20] == 0.2


def _usable(boxes: np.ndarray) -> np.ndarray:
    """Rows that are finite with positive width and height."""
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row IoU of two (N, 4) `x,y,w,h` arrays; 0 where either box is NaN or has w, h <= 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = _usable(a) & _usable(b)
    a, b = np.where(ok[:, None], a, 0.0), np.where(ok[:, None], b, 0.0)
    tl = np.maximum(a[:, :2], b[:, :2])
    br = np.minimum(a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:])
    inter = np.clip(br - tl, 0.0, None).prod(axis=1)
    union = a[:, 2:].prod(axis=1) + b[:, 2:].prod(axis=1) - inter
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def _center_offsets(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, 2) offsets between box centers; inf where the prediction is unusable."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    offsets = (pred[:, :2] + pred[:, 2:] / 2) - (gt[:, :2] + gt[:, 2:] / 2)
    return np.where(_usable(pred)[:, None], offsets, np.inf)


def center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance in pixels between predicted and ground-truth centers (inf for unusable predictions)."""
    return np.hypot(*_center_offsets(pred, gt).T)


def normalized_center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Center distance with x / y offsets divided by the ground-truth w / h (LaSOT, TrackingNet)."""
    gt = np.asarray(gt, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.hypot(*(_center_offsets(pred, gt) / gt[:, 2:]).T)


def valid_frames(seq: Sequence) -> np.ndarray:
    """Frames that count in the metrics: usable ground-truth box and target not absent."""
    return _usable(seq.ground_truth) & ~seq.absent


@dataclass(frozen=True)
class SequenceMetrics:
    """OPE curves of one tracker on one sequence (see the module docstring for the conventions)."""

    name: str
    n_frames: int
    n_valid: int
    success_curve: np.ndarray  # (21,) over OVERLAP_THRESHOLDS
    precision_curve: np.ndarray  # (51,) over CENTER_THRESHOLDS
    norm_precision_curve: np.ndarray  # (51,) over NORM_CENTER_THRESHOLDS

    @property
    def auc(self) -> float:
        """Area under the success curve (mean over the 21 thresholds)."""
        return float(self.success_curve.mean())

    @property
    def precision(self) -> float:
        """Precision at 20 px."""
        return float(self.precision_curve[PRECISION_INDEX])

    @property
    def norm_precision(self) -> float:
        """Normalized precision at 0.2."""
        return float(self.norm_precision_curve[NORM_PRECISION_INDEX])


def _rate(values: np.ndarray, thresholds: np.ndarray, above: bool) -> np.ndarray:
    """Fraction of `values` > (above) or <= (not above) each threshold; NaN curve if no values."""
    if values.size == 0:
        return np.full(thresholds.shape, np.nan)
    hits = values[:, None] > thresholds[None, :] if above else values[:, None] <= thresholds[None, :]
    return hits.mean(axis=0)


def evaluate_sequence(pred: np.ndarray, seq: Sequence) -> SequenceMetrics:
    """OPE curves of predicted (N, 4) `x,y,w,h` boxes against `seq`'s ground truth."""
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != (len(seq), 4):
        raise UserError(f"predictions of shape {pred.shape} for sequence {seq.name!r} with {len(seq)} frames "
                        f"(expected ({len(seq)}, 4))")
    valid = valid_frames(seq)
    pred, gt = pred[valid], seq.ground_truth[valid]
    return SequenceMetrics(
        name=seq.name,
        n_frames=len(seq),
        n_valid=int(valid.sum()),
        success_curve=_rate(iou(pred, gt), OVERLAP_THRESHOLDS, above=True),
        precision_curve=_rate(center_error(pred, gt), CENTER_THRESHOLDS, above=False),
        norm_precision_curve=_rate(normalized_center_error(pred, gt), NORM_CENTER_THRESHOLDS, above=False),
    )


@dataclass(frozen=True)
class TrackerMetrics:
    """One tracker over a set of sequences: per-sequence metrics and their mean curves."""

    name: str
    sequences: tuple[SequenceMetrics, ...]
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray

    @property
    def auc(self) -> float:
        """Mean success-curve AUC (the usual "AUC" / "success" score)."""
        return float(self.success_curve.mean())

    @property
    def precision(self) -> float:
        """Mean precision at 20 px."""
        return float(self.precision_curve[PRECISION_INDEX])

    @property
    def norm_precision(self) -> float:
        """Mean normalized precision at 0.2."""
        return float(self.norm_precision_curve[NORM_PRECISION_INDEX])


def _mean_curve(curves: list[np.ndarray], size: int) -> np.ndarray:
    """Mean of equal-length curves; NaN curve when there are none."""
    return np.mean(curves, axis=0) if curves else np.full(size, np.nan)


def summarize_tracker(name: str, per_sequence: Iterable[SequenceMetrics]) -> TrackerMetrics:
    """Mean curves of per-sequence metrics (sequences without a valid frame do not count)."""
    per_sequence = tuple(per_sequence)
    scored = [m for m in per_sequence if m.n_valid > 0]
    return TrackerMetrics(
        name=name,
        sequences=per_sequence,
        success_curve=_mean_curve([m.success_curve for m in scored], OVERLAP_THRESHOLDS.size),
        precision_curve=_mean_curve([m.precision_curve for m in scored], CENTER_THRESHOLDS.size),
        norm_precision_curve=_mean_curve([m.norm_precision_curve for m in scored], NORM_CENTER_THRESHOLDS.size),
    )


def evaluate_tracker(results: Mapping[str, np.ndarray], sequences: Iterable[Sequence],
                     name: str = "tracker") -> TrackerMetrics:
    """Evaluate `results` (sequence name -> (N, 4) boxes) on every sequence; each must have results."""
    per_sequence = []
    for seq in sequences:
        if seq.name not in results:
            raise UserError(f"tracker {name!r} has no results for sequence {seq.name!r}")
        per_sequence.append(evaluate_sequence(results[seq.name], seq))
    return summarize_tracker(name, per_sequence)


def read_results(path: str | Path) -> np.ndarray:
    """Read a results file (one `x,y,w,h` line per frame, comma/tab/space separated) as (N, 4) float64."""
    return parse_boxes(Path(path))


def write_results(path: str | Path, boxes: np.ndarray) -> None:
    """Write (N, 4) boxes as `x,y,w,h` lines with two decimals, atomically."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected (N, 4) boxes, got shape {boxes.shape}")
    with atomic_path(path) as tmp:
        np.savetxt(tmp, boxes, fmt="%.2f", delimiter=",")
