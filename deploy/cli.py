"""`spiketrack simulate`: argument definitions and the command (registered by spiketrack.cli)."""
from __future__ import annotations

import argparse
from pathlib import Path

from deploy.backend import BACKENDS


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """--bundle, --sequence, --frames, --out, --backend, --no-progress."""
    parser.add_argument("--bundle", type=Path, required=True, help="export bundle folder (converters.export_lava)")
    parser.add_argument("--sequence", type=Path, required=True, help="sequence folder (OTB/UAV123, LaSOT or GOT-10k)")
    parser.add_argument("--frames", type=int, help="simulate only the first N frames (default: all)")
    parser.add_argument("--out", type=Path, default=Path("out/simulate"),
                        help="folder for <sequence>.txt, counts.json, counts_template.json (default out/simulate)")
    parser.add_argument("--backend", choices=BACKENDS, default="lava",
                        help="lava (fixed_pt CPU simulation, default) or numpy (same kernels, no Lava)")
    parser.add_argument("--no-progress", action="store_true", help="no per-frame progress bar")


def run_simulate_command(args: argparse.Namespace) -> int:
    """Run `deploy.simulate.simulate` and print where the results went."""
    from deploy.simulate import simulate

    result = simulate(args.bundle, args.sequence, frames=args.frames, out_dir=args.out, backend=args.backend,
                      progress=not args.no_progress)
    print(f"{result.sequence}: {result.frames} frames on {args.backend}, "
          f"{result.seconds_per_frame:.3f} s per search frame -> {result.boxes_path}, {result.counts_path}")
    if result.saturated:
        print(f"saturated values in {len(result.saturated)} nodes (see simulate.json)")
    return 0
