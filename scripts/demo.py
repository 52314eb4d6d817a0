"""The README's main job, end to end on the embedded demo sequence (or a sequence you give):
track with the default model, write boxes and an annotated GIF, evaluate, print a summary."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from spiketrack.data.datasets import load_sequence
from spiketrack.data.synthetic import write_demo_sequence
from spiketrack.default_model import resolve_model
from spiketrack.errors import UserError
from spiketrack.evaluation.ope import evaluate_sequence, write_results
from spiketrack.evaluation.visualize import annotated_gif
from spiketrack.models.fuse import fuse_for_inference
from spiketrack.tracker.runner import run_tracker_on_sequence
from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker, TrackerParams


def run_demo(out: Path, sequence: Path | None) -> list[tuple[str, str]]:
    """Run every step; returns (step, result) rows for the summary table."""
    rows = []
    seq = load_sequence(sequence) if sequence else write_demo_sequence(out / "astronaut_on_coffee")
    rows.append(("sequence", f"{seq.name}: {len(seq)} frames" + ("" if sequence else " (embedded, rendered)")))
    resolved = resolve_model()
    rows.append(("model", f"{resolved.model.cfg.name}; {resolved.weights}"))
    tracker = SpikeTrackTracker(fuse_for_inference(resolved.model), TrackerParams.from_model_cfg(resolved.model.cfg))
    boxes, fps = run_tracker_on_sequence(tracker, seq)
    write_results(out / "boxes.txt", boxes)
    metrics = evaluate_sequence(boxes, seq)
    rows.append(("tracking", f"{fps:.1f} frames/s; success AUC {metrics.auc:.3f}, precision@20 {metrics.precision:.3f}"))
    rows.append(("outputs", f"{out / 'boxes.txt'}, {annotated_gif(seq, boxes, out / 'tracking.gif')}"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequence", type=Path, help="sequence folder (default: the embedded demo sequence)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    try:
        rows = run_demo(args.out, args.sequence)
    except UserError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 2
    width = max(len(step) for step, _ in rows)
    print("\n| " + "step".ljust(width) + " | result |\n|" + "-" * (width + 2) + "|---|")
    for step, result in rows:
        print(f"| {step.ljust(width)} | {result} |")
    print(f"\ndone in {time.perf_counter() - start:.0f} s; everything is in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
