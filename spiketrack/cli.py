"""`spiketrack` command line: thin sub-commands over library functions; user errors are one line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

from spiketrack.errors import UserError


def cmd_track(args: argparse.Namespace) -> int:
    from spiketrack.data.datasets import load_sequence
    from spiketrack.default_model import resolve_model
    from spiketrack.evaluation.ope import write_results
    from spiketrack.models.fuse import fuse_for_inference
    from spiketrack.tracker.runner import run_tracker_on_sequence
    from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker, TrackerParams

    seq = load_sequence(args.sequence)
    resolved = resolve_model(args.checkpoint, args.variant)
    print(f"model: {resolved.model.cfg.name}, weights: {resolved.weights}")
    params = TrackerParams.from_model_cfg(resolved.model.cfg).for_dataset(args.dataset_name or seq.name)
    tracker = SpikeTrackTracker(fuse_for_inference(resolved.model), params)
    boxes, fps = run_tracker_on_sequence(tracker, seq, progress=not args.no_progress)
    write_results(args.out, boxes)
    print(f"{seq.name}: {len(seq)} frames, {fps:.1f} frames/s (tracking only) -> {args.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from spiketrack.evaluation.report import run_eval

    out = args.out or (args.results / "eval")
    print(run_eval(args.results, args.dataset, out))
    print(f"plots and metrics.json in {out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from spiketrack.default_model import resolve_model
    from spiketrack.models.summary import model_summary

    print(model_summary(resolve_model(args.checkpoint, args.variant).model))
    return 0


def cmd_import_official(args: argparse.Namespace) -> int:
    from converters.official import import_official

    report = import_official(args.checkpoint, args.variant, args.out, trust_pickle=args.trust_pickle)
    print(f"imported {report.mapped} keys of {report.variant} -> {report.out} "
          f"({len(report.unused)} parameters are never read by inference; kept for key compatibility)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spiketrack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=fn)
        p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
        return p

    p = add("track", cmd_track, "track one sequence; writes one x,y,w,h line per frame")
    p.add_argument("--sequence", type=Path, required=True, help="sequence folder (OTB/UAV123, LaSOT or GOT-10k)")
    p.add_argument("--out", type=Path, required=True, help="results file to write")
    p.add_argument("--checkpoint", type=Path, help="spiketrack checkpoint (default: the shipped demo model)")
    p.add_argument("--variant", help="variant name; without --checkpoint: procedural weights of it")
    p.add_argument("--dataset-name", help="selects the official template-update schedule ('lasot' or other)")
    p.add_argument("--no-progress", action="store_true")

    p = add("eval", cmd_eval, "one-pass evaluation of result files against a dataset")
    p.add_argument("--results", type=Path, required=True, help="folder of <seq>.txt, or of tracker folders")
    p.add_argument("--dataset", type=Path, required=True, help="dataset folder (or one sequence)")
    p.add_argument("--out", type=Path, help="where plots and metrics.json go (default RESULTS/eval)")

    p = add("info", cmd_info, "parameters and layer summary of a variant or checkpoint")
    p.add_argument("--variant", help="variant name (s256_t1 ... b384_t3, tiny)")
    p.add_argument("--checkpoint", type=Path)

    p = add("import-official", cmd_import_official, "convert an official SpikeTrack checkpoint")
    p.add_argument("checkpoint", type=Path, help="official .pth.tar ({'net': state_dict} or bare state dict)")
    p.add_argument("--variant", required=True, help="s256_t1, s256_t3, b256_t1, b256_t3, b384_t1 or b384_t3")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling non-tensor objects (only for files you trust)")

    from converters.cli import add_export_arguments, run_export_command
    from deploy.cli import add_simulate_arguments, run_simulate_command
    from spiketrack.profiler.cli import HELP as PROFILE_HELP, add_profile_arguments, run_profile_command
    from spiketrack.train.cli import add_train_arguments, run_train_command

    add_export_arguments(add("export", run_export_command, "export a checkpoint (lava bundle, onnx, nir)"))
    add_simulate_arguments(add("simulate", run_simulate_command, "run an exported bundle on the Lava CPU simulator"))
    add_profile_arguments(add("profile", run_profile_command, PROFILE_HELP))
    add_train_arguments(add("train", run_train_command, "train a model from a YAML config (torchrun for DDP)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except UserError as err:
        print(f"spiketrack {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
