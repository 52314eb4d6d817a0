"""Inference speed per variant on 2 threads: template encoding, per-frame tracking step, fps, peak memory.

Each variant runs in its own process (so peak RSS is its own). Compares our plain model, the
BN-folded model we track with, and the official figures (spec/timing.md, same machine kind).
Weights: procedural (timing does not depend on values: dense float kernels).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

OFFICIAL_MS = {  # ../shared/spec/timing.md: template encoder, search + head (median, 2 threads)
    "s256_t1": (90.4, 114.1), "s256_t3": (225.6, 144.9), "b256_t1": (204.5, 257.8),
    "b256_t3": (538.4, 321.0), "b384_t1": (379.9, 508.1), "b384_t3": (1370.2, 646.5),
}


def _median_ms(fn, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench_variant(variant: str, frames: int, threads: int, queue) -> None:
    import torch

    from spiketrack.models import build_model
    from spiketrack.models.fuse import fuse_for_inference
    from spiketrack.models.procedural import load_procedural_weights, procedural_inputs

    torch.set_num_threads(threads)
    plain = load_procedural_weights(build_model(variant))
    fused = fuse_for_inference(plain)
    z, x = procedural_inputs(plain.cfg.num_templates, plain.cfg.search_size)
    row = {"variant": variant}
    with torch.inference_mode():
        for name, model in (("plain", plain), ("fused", fused)):
            memories = model.encode_templates(z)
            row[f"{name}_template_ms"] = _median_ms(lambda: model.encode_templates(z), max(3, frames // 5))
            row[f"{name}_step_ms"] = _median_ms(lambda: model.track_step(x, memories), frames)
        ref = plain.track_step(x, plain.encode_templates(z))["score_map"]
        out = fused.track_step(x, fused.encode_templates(z))["score_map"]
        row["max_score_diff"] = float((ref - out).abs().max())
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=["tiny", "s256_t1", "s256_t3", "b256_t1", "b256_t3"])
    parser.add_argument("--frames", type=int, default=30, help="timed tracking steps per variant (median)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    print(f"{'variant':<9}{'tmpl ms':>9}{'step ms':>9}{'fps':>7}{'plain step':>11}{'official step':>14}"
          f"{'speed-up':>9}{'peak MB':>9}{'|dscore|':>10}")
    for variant in args.variants:
        queue = ctx.Queue()
        proc = ctx.Process(target=bench_variant, args=(variant, args.frames, args.threads, queue))
        proc.start()
        row = queue.get()
        proc.join()
        official = OFFICIAL_MS.get(variant, (float("nan"), float("nan")))[1]
        step = row["fused_step_ms"]
        print(f"{variant:<9}{row['fused_template_ms']:>9.1f}{step:>9.1f}{1000 / step:>7.1f}"
              f"{row['plain_step_ms']:>11.1f}{official:>14.1f}{official / step:>9.2f}"
              f"{row['peak_rss_mb']:>9.0f}{row['max_score_diff']:>10.2e}")
    print("\nstep = search + head per frame with cached template memories (our BN-folded model);"
          "\nofficial = the official code on this machine kind (spec/timing.md); |dscore| = max score-map"
          "\ndifference folded vs plain (spike-rounding ties may flip; see tests/test_fuse.py).")


if __name__ == "__main__":
    main()
