"""OTB-style OPE figures (success and precision plots), drawn off-screen with matplotlib's Agg canvas."""
from __future__ import annotations

from pathlib import Path
from collections.abc import Iterable

import numpy as np
from matplotlib.figure import Figure

from spiketrack.evaluation.ope import CENTER_THRESHOLDS, OVERLAP_THRESHOLDS, TrackerMetrics
from spiketrack.utils.atomic import atomic_path


def _plot_curves(path: Path, thresholds: np.ndarray, curves: list[tuple[str, float, np.ndarray]],
                 title: str, xlabel: str, ylabel: str, legend_loc: str) -> None:
    """Draw one line per (label, score, curve), best score first in the legend, and save a PNG atomically."""
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    for label, score, curve in sorted(curves, key=lambda c: -np.nan_to_num(c[1], nan=-1.0)):
        ax.plot(thresholds, curve, linewidth=2, label=f"{label} [{score:.3f}]")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(thresholds[0], thresholds[-1]), ylim=(0.0, 1.0))
    ax.grid(True, linestyle=":")
    ax.legend(loc=legend_loc)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def success_plot(trackers: Iterable[TrackerMetrics], path: Path) -> None:
    """Success rate vs IoU threshold, legend with each tracker's AUC."""
    _plot_curves(path, OVERLAP_THRESHOLDS, [(t.name, t.auc, t.success_curve) for t in trackers],
                 "Success plots of OPE", "Overlap threshold", "Success rate", "lower left")


def precision_plot(trackers: Iterable[TrackerMetrics], path: Path) -> None:
    """Precision vs center-error threshold (pixels), legend with each tracker's precision at 20 px."""
    _plot_curves(path, CENTER_THRESHOLDS, [(t.name, t.precision, t.precision_curve) for t in trackers],
                 "Precision plots of OPE", "Location error threshold (pixels)", "Precision", "lower right")
