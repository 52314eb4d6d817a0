"""`spiketrack profile`: energy of a SpikeTrack run under hardware profiles, compared with TransT.

Registered in `spiketrack.cli` with `add_profile_arguments` / `run_profile_command`.
"""
from __future__ import annotations

import argparse
from pathlib import Path


DEFAULT_FRAMES = 10
HELP = "energy of a SpikeTrack run under hardware profiles, compared with TransT (report.json/html)"


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """The profile command's options (the parent parser adds --threads)."""
    parser.add_argument("--checkpoint", type=Path, help="spiketrack checkpoint (default: the shipped demo "
                        "model, else procedural weights; the report says which)")
    parser.add_argument("--variant", help="variant name; without --checkpoint: procedural weights of it")
    parser.add_argument("--sequence", type=Path, help="sequence folder to track (not needed with --from-simulation)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"track the first N frames: 1 template encoding + N-1 search steps (default {DEFAULT_FRAMES})")
    parser.add_argument("--profile", type=Path, action="append", required=True, dest="profiles",
                        metavar="YAML", help="hardware profile (hw_profiles/*.yaml); repeat to compare several")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json, report.html, counts.json, counts_template.json")
    parser.add_argument("--from-simulation", type=Path, metavar="JSON",
                        help="price the counts.json `spiketrack simulate` wrote (and counts_template.json "
                        "beside it) instead of running PyTorch")
    parser.add_argument("--fps", type=float, default=30.0,
                        help="real-time frame rate assumed for static power (chip time = frames / fps; default 30)")
    parser.add_argument("--chips", type=int, default=1, help="chips holding the network (static power; default 1)")


def run_profile_command(args: argparse.Namespace) -> int:
    """Run `spiketrack.profiler.run.profile` and print its Markdown summary."""
    from spiketrack.profiler.run import profile

    run = profile(args.checkpoint, args.sequence, args.frames, args.profiles, args.out,
                  from_simulation=args.from_simulation, variant=args.variant, fps=args.fps, chips=args.chips)
    print(run.summary, end="")
    print(f"report: {run.report_html} and {run.report_json}")
    return 0
