#!/usr/bin/env python
"""onnxruntime vs PyTorch per frame: export each variant (float, optionally fixed point), run the
tracking step on real search crops of one sequence, print median milliseconds (same thread count).

On a shared machine run with OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP threads otherwise spin while
other processes hold the cores, which slowed its step 4x in our measurements."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import torch

from converters.onnx_export import MEMORY_NAMES, export_onnx
from spiketrack.data.datasets import load_sequence
from spiketrack.data.images import read_image
from spiketrack.errors import UserError
from spiketrack.models import build_model
from spiketrack.models.fuse import fuse_for_inference
from spiketrack.models.procedural import load_procedural_weights
from spiketrack.tracker.preprocessing import normalize_crop, sample_target

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEQUENCE = REPO.parent / "shared" / "data" / "sequences" / "Crossing"


def crops(sequence: Path, size: int, frames: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Template (T=1 layout (1, 1, 3, S, S)) from frame 0 and search crops of frames 1..n around the
    ground-truth boxes."""
    seq = load_sequence(sequence)
    n = min(frames, len(seq) - 1)

    def crop(i: int, box) -> torch.Tensor:
        return normalize_crop(sample_target(read_image(seq.frames[i]), box, 4.0, size)[0])[None, None]

    return crop(0, seq.init_box), [crop(i, seq.ground_truth[i - 1]) for i in range(1, n + 1)]


def median_ms(fn: Callable[[torch.Tensor], object], inputs: list[torch.Tensor], warmup: int = 2) -> float:
    """Median wall time of fn over inputs (after `warmup` untimed calls), in milliseconds."""
    for x in inputs[:warmup]:
        fn(x)
    times = []
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def session(path: Path, threads: int) -> ort.InferenceSession:
    """CPU session, `threads` intra-op threads, full graph optimization."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def bench_variant(variant: str, sequence: Path, frames: int, threads: int, fixed: bool, calib: int) -> dict:
    """Median ms per frame: PyTorch (fused model) and onnxruntime float (and fixed point) track steps."""
    model = load_procedural_weights(build_model(variant))
    fused = fuse_for_inference(model)
    template, searches = crops(sequence, model.cfg.search_size, frames)
    templates = template.expand(model.cfg.num_templates, -1, -1, -1, -1).contiguous()
    memories = fused.encode_templates(templates)
    row = {"variant": variant, "frames": len(searches), "threads": threads,
           "torch_ms": median_ms(lambda x: fused.track_step(x, memories), searches)}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = export_onnx(model, Path(tmp) / "float")
        row["export_s"] = time.perf_counter() - t0
        row["onnx_ms"] = run_onnx(result.track_step, memories, searches, threads)
        if fixed:
            from converters.fixed_point import FixedPointModel
            from converters.quantize import default_calibration_frames, quantize_model

            bundle = quantize_model(model, default_calibration_frames(limit=calib)).bundle
            fixed_export = export_onnx(model, Path(tmp) / "fixed", fixed_point=True, bundle=bundle)
            reference = FixedPointModel(bundle, model.cfg)
            int_memories = reference.encode_templates(templates)
            row["fixed_torch_ms"] = median_ms(lambda x: reference.track_step(x, int_memories), searches)
            row["fixed_onnx_ms"] = run_onnx(fixed_export.track_step, [m[:, None] for m in int_memories],
                                            searches, threads)
    return row


def run_onnx(path: Path, memories: list[torch.Tensor], searches: list[torch.Tensor], threads: int) -> float:
    """Median ms of the ONNX tracking step over the search crops."""
    sess = session(path, threads)
    feeds = {name: m.numpy() for name, m in zip(MEMORY_NAMES, memories)}
    return median_ms(lambda x: sess.run(None, {"search": x.numpy(), **feeds}), searches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=["tiny", "s256_t1"])
    parser.add_argument("--sequence", type=Path, default=DEFAULT_SEQUENCE)
    parser.add_argument("--frames", type=int, default=20, help="timed search frames (default 20)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fixed", action="store_true", help="also time the fixed-point graph (quantizes first)")
    parser.add_argument("--calibration-frames", type=int, default=3, help="with --fixed (default 3)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        rows = [bench_variant(v, args.sequence, args.frames, args.threads, args.fixed, args.calibration_frames)
                for v in args.variants]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'variant':<10}{'frames':>7}{'torch ms':>10}{'onnx ms':>10}{'speed-up':>10}"
          f"{'fixed torch':>13}{'fixed onnx':>12}{'export s':>10}")
    for r in rows:
        fixed = (f"{r['fixed_torch_ms']:>13.1f}{r['fixed_onnx_ms']:>12.1f}" if "fixed_onnx_ms" in r
                 else f"{'-':>13}{'-':>12}")
        print(f"{r['variant']:<10}{r['frames']:>7}{r['torch_ms']:>10.1f}{r['onnx_ms']:>10.1f}"
              f"{r['torch_ms'] / r['onnx_ms']:>10.2f}{fixed}{r['export_s']:>10.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
