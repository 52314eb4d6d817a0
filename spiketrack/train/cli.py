"""`spiketrack train --config CFG [--resume CKPT]`: argument wiring for the main CLI."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from spiketrack.errors import UserError

from .config import load_config
from .trainer import train


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the `train` sub-command's options on `parser`."""
    parser.add_argument("--config", type=Path, required=True, help="training YAML (see configs/train_tiny.yaml)")
    parser.add_argument("--resume", type=Path, default=None,
                        help="continue exactly from a training checkpoint (OUTPUT_DIR/last.pt)")


def run_train_command(args: argparse.Namespace) -> int:
    """Train as configured; prints the final checkpoint path. Under torchrun only rank 0 logs progress."""
    is_main = int(os.environ.get("RANK", "0")) == 0
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, format="%(message)s")
    config = load_config(args.config)
    if args.resume is not None and not args.resume.is_file():
        raise UserError("no such checkpoint", args.resume)
    final = train(config, args.resume)
    if is_main:
        print(final)
    return 0
