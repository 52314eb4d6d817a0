#!/usr/bin/env python
"""Run the reference trackers (static, KCF, CSRT, MIL) on every sequence of a dataset, write one results
file per tracker and sequence (`<out>/<tracker>/<seq>.txt`) and print the OPE comparison table."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from spiketrack.data.datasets import load_dataset
from spiketrack.errors import UserError
from spiketrack.evaluation.ope import write_results
from spiketrack.evaluation.report import run_eval
from spiketrack.tracker.baselines import OPENCV_KINDS, OpenCVTracker, StaticBoxTracker
from spiketrack.tracker.runner import run_tracker_on_sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "sequences"
TRACKERS = ("static", *OPENCV_KINDS)


def make_tracker(name: str) -> StaticBoxTracker | OpenCVTracker:
    """A fresh tracker instance by name ('static' or an OpenCV kind)."""
    return StaticBoxTracker() if name == "static" else OpenCVTracker(name)


def run_baselines(dataset: Path, out: Path, trackers: tuple[str, ...], progress: bool) -> dict[str, float]:
    """Run each tracker on each sequence, writing results files; return each tracker's mean fps."""
    sequences = load_dataset(dataset)
    speeds = {}
    for name in trackers:
        fps = []
        for seq in sequences:
            boxes, seq_fps = run_tracker_on_sequence(make_tracker(name), seq, progress=progress)
            write_results(out / name / f"{seq.name}.txt", boxes)
            fps.append(seq_fps)
        speeds[name] = float(np.nanmean(fps))
    return speeds


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the baselines, print the table; exit status 2 on bad input."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="dataset folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("out/baselines"), help="results folder (default: %(default)s)")
    parser.add_argument("--trackers", nargs="+", choices=TRACKERS, default=list(TRACKERS))
    parser.add_argument("--no-progress", action="store_true", help="hide the per-sequence progress bars")
    args = parser.parse_args(argv)
    try:
        speeds = run_baselines(args.dataset, args.out, tuple(args.trackers), not args.no_progress)
        print(run_eval(args.out, args.dataset, args.out / "report"), end="")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\nspeed (frames/s, track calls only, mean over sequences): "
          + ", ".join(f"{name} {fps:.0f}" for name, fps in speeds.items()))
    print(f"results in {args.out}, figures and metrics.json in {args.out / 'report'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
