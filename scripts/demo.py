"""The README's main job: track a sequence with the default model, evaluate it, print a summary."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from spiketrack.data.datasets import load_sequence
from spiketrack.default_model import resolve_model
from spiketrack.errors import UserError
from spiketrack.evaluation.ope import evaluate_sequence, write_results
from spiketrack.models.fuse import fuse_for_inference
from spiketrack.tracker.runner import run_tracker_on_sequence
from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker, TrackerParams

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEQUENCE = REPO.parent / "shared" / "data" / "sequences" / "Crossing"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequence", type=Path, default=DEFAULT_SEQUENCE)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    try:
        seq = load_sequence(args.sequence)
        resolved = resolve_model()
        print(f"model {resolved.model.cfg.name}; weights: {resolved.weights}")
        tracker = SpikeTrackTracker(fuse_for_inference(resolved.model),
                                    TrackerParams.from_model_cfg(resolved.model.cfg))
        boxes, fps = run_tracker_on_sequence(tracker, seq)
        write_results(args.out / f"{seq.name}.txt", boxes)
    except UserError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 2
    m = evaluate_sequence(boxes, seq)
    print(f"\n| sequence | frames | fps | success AUC | precision@20 |\n|---|---|---|---|---|\n"
          f"| {seq.name} | {len(seq)} | {fps:.1f} | {m.auc:.3f} | {m.precision:.3f} |")
    print(f"\nboxes: {args.out / (seq.name + '.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
