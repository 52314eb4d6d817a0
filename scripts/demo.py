"""The README's main job, end to end on the embedded demo sequence (or a sequence you give):
track with the default model (boxes + annotated GIF + OPE), export it to a Lava bundle, simulate
the first frames on Lava's CPU simulator and check them against the fixed-point PyTorch reference,
profile energy (HTML report), print a summary table."""
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

REPO = Path(__file__).resolve().parents[1]
PROFILES = [REPO / "hw_profiles" / name for name in ("cmos45nm.yaml", "loihi.yaml", "loihi2.yaml")]


def truncated(seq, frames: int):
    """The first `frames` frames of a sequence (what the simulator runs)."""
    import dataclasses

    return dataclasses.replace(seq, frames=seq.frames[:frames], ground_truth=seq.ground_truth[:frames],
                               absent=seq.absent[:frames])


def lava_steps(out: Path, seq, model, sim_frames: int) -> list[tuple[str, str]]:
    """Export to a Lava bundle, simulate `sim_frames` frames, compare with the fixed-point reference."""
    import numpy as np

    from converters.export_lava import export_bundle
    from converters.fixed_point import FixedPointModel
    from converters.quantize import default_calibration_frames
    from deploy.simulate import simulate
    from spiketrack.evaluation.ope import iou

    report = export_bundle(model, out / "bundle", default_calibration_frames(4))
    rows = [("export", f"{out / 'bundle'}: {len(report.netx_files)} netx HDF5 files + manifest; "
                       f"{len(report.bundle.search.nodes)} search / {len(report.bundle.template.nodes)} template nodes")]
    sim = simulate(out / "bundle", seq.frames[0].parent.parent, frames=sim_frames, out_dir=out / "lava")
    fixed = SpikeTrackTracker(FixedPointModel(report.bundle, model.cfg), TrackerParams.from_model_cfg(model.cfg))
    ref_boxes, _ = run_tracker_on_sequence(fixed, truncated(seq, sim_frames), progress=False)
    exact = np.array_equal(ref_boxes, sim.boxes)
    rows.append(("lava simulate", f"{sim_frames} frames, {sim.seconds_per_frame:.2f} s/frame (+{sim.startup_seconds:.0f} s "
                                  f"start-up); boxes {'EQUAL' if exact else 'DIFFER FROM'} the fixed-point reference"))
    return rows, exact, sim


def profile_step(out: Path, checkpoint: Path | None, seq_dir: Path, frames: int) -> tuple[str, str]:
    """Energy report of the first frames under the shipped hardware profiles."""
    from spiketrack.profiler.run import profile

    import json

    run = profile(checkpoint, seq_dir, frames, PROFILES, out / "energy")
    rows = json.loads(run.report_json.read_text())["comparison"]
    paper = next(r for r in rows if r["model"] == "paper" and r["profile"] == "cmos45nm")
    return ("energy", f"{run.report_html}; paper method (45 nm) {paper['per_frame_j'] * 1e6:.0f} uJ/frame = "
                      f"1/{1 / paper['ratio_to_transt']:.0f} of TransT (paper: 1/26)")


def run_demo(out: Path, sequence: Path | None, sim_frames: int) -> tuple[list[tuple[str, str]], bool]:
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
    lava_rows, exact, sim = lava_steps(out, seq, resolved.model, sim_frames)
    rows += lava_rows
    rows.append(profile_step(out, resolved.checkpoint, seq.frames[0].parent.parent, sim_frames))
    return rows, exact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequence", type=Path, help="sequence folder (default: the embedded demo sequence)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--sim-frames", type=int, default=5, help="frames simulated on Lava (default 5)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    try:
        rows, exact = run_demo(args.out, args.sequence, args.sim_frames)
    except UserError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 2
    width = max(len(step) for step, _ in rows)
    print("\n| " + "step".ljust(width) + " | result |\n|" + "-" * (width + 2) + "|---|")
    for step, result in rows:
        print(f"| {step.ljust(width)} | {result} |")
    print(f"\ndone in {time.perf_counter() - start:.0f} s; everything is in {args.out}/")
    if not exact:
        print("demo: error: the Lava simulation disagrees with the fixed-point reference", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
