"""Compare trackers from their result files: OPE metrics, plots, `metrics.json` and a text table.

`results_root` holds either `<seq>.txt` files (one tracker, named after the folder) or one folder per
tracker with `<seq>.txt` files inside. Means are taken over the sequences that have results from every
tracker (a fair comparison, as pytracking does); sequences some tracker lacks are listed, not fatal.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spiketrack.data.datasets import load_dataset
from spiketrack.data.sequence import Sequence
from spiketrack.errors import UserError
from spiketrack.evaluation.ope import (CENTER_THRESHOLDS, NORM_CENTER_THRESHOLDS, OVERLAP_THRESHOLDS,
                                       SequenceMetrics, TrackerMetrics, evaluate_sequence, read_results,
                                       summarize_tracker)
from spiketrack.evaluation.plots import precision_plot, success_plot
from spiketrack.utils.atomic import write_text_atomic


@dataclass(frozen=True)
class Report:
    """Result of comparing trackers on a dataset."""

    trackers: tuple[TrackerMetrics, ...]  # means over `sequences`, best AUC first
    sequences: tuple[str, ...]  # sequences with results from every tracker
    per_sequence: dict[str, dict[str, SequenceMetrics]]  # tracker -> sequence -> metrics (all with results)
    dataset_sequences: tuple[str, ...]
    missing: dict[str, tuple[str, ...]]  # tracker -> dataset sequences without a results file
    unmatched: dict[str, tuple[str, ...]]  # tracker -> result files naming no dataset sequence
    outputs: tuple[Path, ...]


def find_result_sets(results_root: Path) -> dict[str, dict[str, Path]]:
    """Tracker name -> {sequence name -> results file} from either supported results layout."""
    if not results_root.is_dir():
        raise UserError("no such results folder", results_root)
    direct = sorted(results_root.glob("*.txt"))
    if direct:
        return {results_root.resolve().name: {p.stem: p for p in direct}}
    sets = {}
    for folder in sorted(p for p in results_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(folder.glob("*.txt"))
        if files:
            sets[folder.name] = {p.stem: p for p in files}
    if not sets:
        raise UserError("no results: expected <seq>.txt files or one folder per tracker holding them", results_root)
    return sets


def load_results(path: Path, seq: Sequence) -> np.ndarray:
    """Read one results file and check it has one box per frame of `seq` (UserError naming the file)."""
    boxes = read_results(path)
    if len(boxes) != len(seq):
        raise UserError(f"{len(boxes)} boxes but sequence {seq.name!r} has {len(seq)} frames", path)
    return boxes


def _common_sequences(names: list[str], per_sequence: dict[str, dict[str, SequenceMetrics]],
                      results_root: Path) -> tuple[str, ...]:
    """Dataset sequences evaluated for every tracker; UserError if there is none."""
    common = tuple(n for n in names if all(n in per_tracker for per_tracker in per_sequence.values()))
    if not common:
        counts = ", ".join(f"{t}: {len(m)}/{len(names)}" for t, m in per_sequence.items())
        raise UserError(f"no dataset sequence has results from every tracker ({counts})", results_root)
    return common


def _json_number(value: float) -> float | None:
    """JSON-safe float (NaN becomes null)."""
    return None if np.isnan(value) else round(float(value), 6)


def _json_curve(curve: np.ndarray) -> list[float | None]:
    """JSON-safe list for a curve."""
    return [_json_number(v) for v in curve]


def _metrics_json(report: Report) -> str:
    """Serialise every number the plots and the table show."""
    data = {
        "conventions": "see spiketrack.evaluation.ope (pytracking OPE, invalid frames excluded)",
        "thresholds": {"overlap": _json_curve(OVERLAP_THRESHOLDS), "center_px": _json_curve(CENTER_THRESHOLDS),
                       "norm_center": _json_curve(NORM_CENTER_THRESHOLDS)},
        "sequences": list(report.sequences),
        "missing": {t: list(s) for t, s in report.missing.items()},
        "unmatched": {t: list(s) for t, s in report.unmatched.items()},
        "trackers": {
            t.name: {
                "auc": _json_number(t.auc), "precision_20": _json_number(t.precision),
                "norm_precision_0.2": _json_number(t.norm_precision),
                "success_curve": _json_curve(t.success_curve), "precision_curve": _json_curve(t.precision_curve),
                "norm_precision_curve": _json_curve(t.norm_precision_curve),
                "per_sequence": {
                    m.name: {"auc": _json_number(m.auc), "precision_20": _json_number(m.precision),
                             "norm_precision_0.2": _json_number(m.norm_precision),
                             "n_frames": m.n_frames, "n_valid": m.n_valid}
                    for m in report.per_sequence[t.name].values()},
            } for t in report.trackers},
    }
    return json.dumps(data, indent=1) + "\n"


def compare_trackers(results_root: Path, dataset_dir: Path, out_dir: Path) -> Report:
    """Evaluate every tracker under `results_root` on `dataset_dir`; write success.png, precision.png
    and metrics.json to `out_dir`."""
    results_root, out_dir = Path(results_root), Path(out_dir)
    sequences = {s.name: s for s in load_dataset(dataset_dir)}
    names = sorted(sequences)
    per_sequence, missing, unmatched = {}, {}, {}
    for tracker, files in find_result_sets(results_root).items():
        per_sequence[tracker] = {n: evaluate_sequence(load_results(files[n], sequences[n]), sequences[n])
                                 for n in names if n in files}
        if absent := tuple(n for n in names if n not in files):
            missing[tracker] = absent
        if extra := tuple(sorted(files[n].name for n in files if n not in sequences)):
            unmatched[tracker] = extra
    common = _common_sequences(names, per_sequence, results_root)
    trackers = tuple(sorted((summarize_tracker(t, [m[n] for n in common]) for t, m in per_sequence.items()),
                            key=lambda t: (-t.auc, t.name)))
    outputs = (out_dir / "success.png", out_dir / "precision.png", out_dir / "metrics.json")
    report = Report(trackers, common, per_sequence, tuple(names), missing, unmatched, outputs)
    success_plot(trackers, outputs[0])
    precision_plot(trackers, outputs[1])
    write_text_atomic(outputs[2], _metrics_json(report))
    return report


def _row(cells: list[str], widths: list[int]) -> str:
    """Left-align the first cell, right-align the others."""
    return "  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]).rstrip()


def _table(rows: list[list[str]]) -> list[str]:
    """Aligned text lines for a header row followed by data rows."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [_row(r, widths) for r in rows]


def _fmt(value: float) -> str:
    """Three decimals, '-' for NaN."""
    return "-" if np.isnan(value) else f"{value:.3f}"


def format_table(report: Report) -> str:
    """Plain-text summary: per tracker AUC, P@20, normalized P@0.2, then AUC per sequence."""
    names = [t.name for t in report.trackers]
    lines = [f"OPE on {len(report.sequences)} of {len(report.dataset_sequences)} sequences "
             "(means over sequences with results from every tracker)", ""]
    lines += _table([["tracker", "AUC", "P@20", "NormP@0.2"]]
                    + [[t.name, _fmt(t.auc), _fmt(t.precision), _fmt(t.norm_precision)] for t in report.trackers])
    lines += ["", "AUC per sequence"]
    rows = [["sequence", "frames", *names]]
    for seq in report.dataset_sequences:
        metrics = [report.per_sequence[t].get(seq) for t in names]
        n_frames = next((str(m.n_frames) for m in metrics if m is not None), "-")
        rows.append([seq, n_frames, *("-" if m is None else _fmt(m.auc) for m in metrics)])
    lines += _table(rows)
    for tracker, seqs in report.missing.items():
        lines.append(f"missing results for {tracker}: {', '.join(seqs)}")
    for tracker, files in report.unmatched.items():
        lines.append(f"ignored files of {tracker} matching no sequence: {', '.join(files)}")
    return "\n".join(lines) + "\n"


def run_eval(results_dir: Path, dataset_dir: Path, out_dir: Path) -> str:
    """What `spiketrack eval` runs: compare the trackers, write the figures and JSON, return the table."""
    return format_table(compare_trackers(Path(results_dir), Path(dataset_dir), Path(out_dir)))
