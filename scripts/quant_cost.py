"""Quantization cost: float vs fixed-point tracker on every sequence, and per-layer spike mismatch.

Usage: .venv/bin/python scripts/quant_cost.py [--variant tiny] [--checkpoint C] [--frames N]

Per sequence: mean IoU between the float and fixed-point boxes (frames 1..N-1), success AUC of each
against the ground truth and the change. Then, on a few frames of the first sequence (template at
frame 0's ground truth, search crops around the previous ground-truth box), per neuron layer: spike
counts of the float model (`record_spikes` on the model itself), of the fixed-point reference, and
the fraction of elements whose spike differs (fixed vs the float graph, and float vs the float graph
fed input noise of std 1e-4: the model's own sensitivity). Calibration uses packaged images only.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from converters.fixed_point import FixedPointModel, run_fixed, spike_mismatch  # noqa: E402
from converters.graph import build_float_graphs, run_float  # noqa: E402
from converters.quantize import default_calibration_frames, quantize_model  # noqa: E402
from spiketrack.data.datasets import load_sequence, sequence_folders  # noqa: E402
from spiketrack.data.images import read_image  # noqa: E402
from spiketrack.default_model import resolve_model  # noqa: E402
from spiketrack.evaluation.ope import evaluate_sequence, iou  # noqa: E402
from spiketrack.models.fuse import fuse_for_inference  # noqa: E402
from spiketrack.models.probes import record_spikes  # noqa: E402
from spiketrack.tracker.preprocessing import normalize_crop, sample_target  # noqa: E402
from spiketrack.tracker.runner import run_tracker_on_sequence  # noqa: E402
from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker, TrackerParams  # noqa: E402

NOISE = 1e-4


@dataclass
class SequenceCost:
    """Float vs fixed-point tracking on one sequence."""

    name: str
    frames: int
    mean_iou: float
    auc_float: float
    auc_fixed: float
    seconds_fixed: float


def truncated(seq, frames: int | None):
    """The first `frames` frames of a sequence (all when None)."""
    if frames is None or frames >= len(seq):
        return seq
    return type(seq)(seq.name, seq.frames[:frames], seq.ground_truth[:frames], seq.absent[:frames])


def sequence_cost(model, bundle, seq) -> SequenceCost:
    """Run both trackers over `seq` and compare their boxes with each other and the ground truth."""
    params = TrackerParams.from_model_cfg(model.cfg).for_dataset(seq.name)
    float_boxes, _ = run_tracker_on_sequence(SpikeTrackTracker(fuse_for_inference(model), params), seq,
                                             progress=False)
    start = time.perf_counter()
    fixed_boxes, _ = run_tracker_on_sequence(SpikeTrackTracker(FixedPointModel(bundle, model.cfg), params), seq,
                                             progress=False)
    seconds = time.perf_counter() - start
    agreement = float(iou(float_boxes[1:], fixed_boxes[1:]).mean()) if len(seq) > 1 else 1.0
    return SequenceCost(seq.name, len(seq), agreement, evaluate_sequence(float_boxes, seq).auc,
                        evaluate_sequence(fixed_boxes, seq).auc, seconds)


def crops(seq, n_frames: int, size: int, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Templates (T copies of frame 0's crop) and search crops of frames 1..n at the previous GT box."""
    template = normalize_crop(sample_target(read_image(seq.frames[0]), seq.ground_truth[0], 4.0, size)[0])
    searches = [normalize_crop(sample_target(read_image(seq.frames[i]), seq.ground_truth[i - 1], 4.0, size)[0])
                for i in range(1, min(n_frames, len(seq) - 1) + 1)]
    return template[None].expand(steps, -1, -1, -1), searches


def count(values: torch.Tensor) -> int:
    return int(values.sum())


def spike_table(model, bundle, seq, n_frames: int) -> list[tuple[str, int, int, float, float]]:
    """Per neuron node (search graph, summed over frames): float count, fixed count, mismatch, noise floor."""
    template_g, search_g = build_float_graphs(model)
    cfg = model.cfg
    templates, searches = crops(seq, n_frames, cfg.search_size, cfg.num_templates)
    torch.manual_seed(0)
    tv = run_float(template_g, {"templates": templates})
    tf = run_fixed(bundle.template, {"templates": templates})
    memories_float = {k: tv[v] for k, v in template_g.outputs.items()}
    memories_fixed = {k: tf.values[v] for k, v in bundle.template.outputs.items()}
    with torch.no_grad():
        float_memories = model.encode_templates(templates[:, None])
    rows: dict[str, list[float]] = {}
    for search in searches:
        with torch.no_grad(), record_spikes(model) as rec:
            model.track_step(search[None, None], float_memories)
        sv = run_float(search_g, {"search": search[None], **memories_float})
        sn = run_float(search_g, {"search": search[None] + NOISE * torch.randn_like(search[None]), **memories_float})
        sf = run_fixed(bundle.search, {"search": search[None], **memories_fixed})
        mis = spike_mismatch(bundle.search, sf.values, sv)
        floor = spike_mismatch(bundle.search, {k: torch.round(v * 4).to(torch.int64) for k, v in sn.items()}, sv)
        for nid in mis:
            acc = rows.setdefault(nid, [0, 0, 0.0, 0.0])
            acc[0] += count(rec[nid].t_counts)
            acc[1] += count(sf.values[nid])
            acc[2] += mis[nid] / len(searches)
            acc[3] += floor[nid] / len(searches)
    return [(nid, int(a[0]), int(a[1]), a[2], a[3]) for nid, a in rows.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="tiny")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--sequences", type=Path, default=REPO.parent / "shared" / "data" / "sequences")
    parser.add_argument("--frames", type=int, help="only the first N frames of each sequence")
    parser.add_argument("--spike-frames", type=int, default=3)
    parser.add_argument("--calibration-frames", type=int)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    resolved = resolve_model(args.checkpoint, args.variant)
    model = resolved.model.eval()
    calibration = default_calibration_frames(args.calibration_frames)
    start = time.perf_counter()
    result = quantize_model(model, calibration)
    print(f"model {model.cfg.name}: {resolved.weights}")
    print(f"quantized on {len(calibration)} packaged-image crops in {time.perf_counter() - start:.1f} s; "
          f"{len(result.report.clipped_layers())} layers clip weights/biases", flush=True)
    seqs = [truncated(load_sequence(f), args.frames) for f in sequence_folders(args.sequences)]

    print(f"\n{'sequence':<12} {'frames':>6} {'IoU(float,fixed)':>17} {'AUC float':>10} {'AUC fixed':>10} "
          f"{'change':>8} {'s/frame fixed':>13}")
    costs = []
    for seq in seqs:
        c = sequence_cost(model, result.bundle, seq)
        costs.append(c)
        print(f"{c.name:<12} {c.frames:>6} {c.mean_iou:>17.3f} {c.auc_float:>10.3f} {c.auc_fixed:>10.3f} "
              f"{c.auc_fixed - c.auc_float:>+8.4f} {c.seconds_fixed / max(c.frames - 1, 1):>13.3f}", flush=True)
    frames = sum(c.frames for c in costs)
    mean = lambda key: float(np.mean([getattr(c, key) for c in costs]))  # noqa: E731
    print(f"{'mean':<12} {frames:>6} {mean('mean_iou'):>17.3f} {mean('auc_float'):>10.3f} "
          f"{mean('auc_fixed'):>10.3f} {mean('auc_fixed') - mean('auc_float'):>+8.4f}")

    rows = spike_table(model, result.bundle, seqs[0], args.spike_frames)
    print(f"\nsearch-graph spikes on {args.spike_frames} frames of {seqs[0].name}: float (record_spikes on the "
          f"model) vs fixed point; mismatch = fraction of elements differing; floor = float vs float with "
          f"input noise std {NOISE:g}")
    print(f"{'neuron call':<52} {'float':>9} {'fixed':>9} {'count Δ':>8} {'mismatch':>9} {'floor':>7}")
    for nid, fl, fx, mis, floor in rows:
        rel = (fx - fl) / fl if fl else 0.0
        print(f"{nid:<52} {fl:>9} {fx:>9} {rel:>+8.1%} {mis:>9.3f} {floor:>7.3f}")
    print(f"{'mean over layers':<52} {'':>9} {'':>9} {'':>8} {np.mean([r[3] for r in rows]):>9.3f} "
          f"{np.mean([r[4] for r in rows]):>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
