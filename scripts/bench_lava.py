"""Seconds per frame and peak memory of the Lava CPU simulation next to the fixed-point PyTorch reference.

For each variant (default: tiny and s256_t1) the same real search crops (Crossing, around each
frame's ground-truth box) run through three executors, each in its own process so that its peak
memory is its own: `lava` (deploy.lava, Loihi2SimCfg fixed_pt, all Lava worker processes), `torch`
(converters.fixed_point.run_fixed, the golden reference) and `numpy` (deploy's kernels without
Lava, to separate Lava's overhead). Per frame = median steady-state search step (template encoding
and Lava start-up reported apart). Peak memory = the largest sum of PSS (proportional set size, so
forked copy-on-write pages and shared-memory channels are not double counted) over the executor's
whole process tree, sampled every 0.2 s.

    .venv/bin/python scripts/bench_lava.py [--variants tiny s256_t1] [--frames 5] [--out out/bench_lava.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SEQUENCE = REPO.parent / "shared" / "data" / "sequences" / "Crossing"
EXECUTORS = ("lava", "torch", "numpy")


# ----------------------------------------------------------------------------- memory sampling (/proc)

def children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def tree_pss_bytes(root: int) -> int:
    """Sum of PSS over `root` and all its descendants."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        stack += children(pid)
    return total


def run_sampled(cmd: list[str], timeout: float) -> tuple[str, int]:
    """Run `cmd`, sampling its process tree's PSS; (stdout, peak bytes)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_pss_bytes(proc.pid))
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate(timeout=timeout)
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {proc.returncode}")
    return out, peak[0]


# ----------------------------------------------------------------------------- workers

def search_crops(size: int, frames: int):
    """Normalized search crops (1, 3, S, S) of frames 1..N around the previous frame's box, and the template."""
    from spiketrack.data.datasets import load_sequence
    from spiketrack.data.images import read_image
    from spiketrack.tracker.preprocessing import normalize_crop, sample_target

    seq = load_sequence(SEQUENCE)
    z, _ = sample_target(read_image(seq.frames[0]), seq.init_box, 4.0, size)
    xs = [normalize_crop(sample_target(read_image(seq.frames[i]), seq.ground_truth[i - 1], 4.0, size)[0]).numpy()[None]
          for i in range(1, frames + 1)]
    return normalize_crop(z).numpy()[None], xs


def worker(executor: str, bundle_dir: str, frames: int, threads: int) -> dict:
    """Time one executor on one bundle (runs inside its own process) with `threads` torch/BLAS threads
    (the Lava worker processes always use one BLAS thread each, see deploy.lava.fused)."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")
    if executor == "lava":
        import deploy.lava_compat  # noqa: F401
    from converters.export_lava import load_export
    from deploy.simulate import bundle_config

    bundle, _ = load_export(bundle_dir)
    cfg = bundle_config(bundle, bundle_dir)
    z, xs = search_crops(cfg.search_size, frames)
    templates = np.repeat(z, cfg.num_templates, axis=0)
    times = []
    start = time.perf_counter()
    if executor == "torch":
        from converters.fixed_point import run_fixed

        ref = run_fixed(bundle.template, {"templates": torch.from_numpy(templates)})
        template_s = time.perf_counter() - start
        memories = {k: ref.values[v] for k, v in bundle.template.outputs.items()}
        for x in xs:
            start = time.perf_counter()
            run_fixed(bundle.search, {"search": torch.from_numpy(x), **memories})
            times.append(time.perf_counter() - start)
        startup = 0.0
    else:
        from deploy.backend import get_backend

        runner = get_backend(executor).build(bundle)
        runner.encode_templates(templates)
        template_s = time.perf_counter() - start - runner.startup_seconds
        for x in xs:
            before = runner.startup_seconds
            start = time.perf_counter()
            runner.run_frame(x)
            times.append(time.perf_counter() - start - (runner.startup_seconds - before))
        startup = runner.startup_seconds
        runner.close()
    steady = times[1:] if len(times) > 1 else times
    return {"executor": executor, "variant": bundle.variant, "frames": len(times),
            "search_s_per_frame": statistics.median(steady), "first_frame_s": times[0],
            "template_s": template_s, "startup_s": startup}


# ----------------------------------------------------------------------------- driver

def ensure_bundle(variant: str, calibration: int) -> Path:
    """out/lava_<variant>_bundle, exported with the default weights when missing."""
    sys.path.insert(0, str(REPO / "scripts"))
    from check_lava_s256 import export_default

    return export_default(variant, REPO / "out" / f"lava_{variant}_bundle", calibration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["tiny", "s256_t1"])
    parser.add_argument("--frames", type=int, default=5, help="search frames per executor (first one is warm-up)")
    parser.add_argument("--calibration", type=int, default=1, help="calibration images when exporting a bundle")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_lava.json")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch / BLAS threads of the torch and numpy executors (default 1: on a shared 2-core "
                             "machine two spin-waiting threads made the reference 10x slower)")
    parser.add_argument("--worker", nargs=4, metavar=("EXECUTOR", "BUNDLE", "FRAMES", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        executor, bundle_dir, frames, threads = args.worker
        print(json.dumps(worker(executor, bundle_dir, int(frames), int(threads))))
        return 0

    from spiketrack.utils.atomic import write_text_atomic

    results = []
    load_start = os.getloadavg()
    for variant in args.variants:
        bundle_dir = ensure_bundle(variant, args.calibration)
        for executor in EXECUTORS:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", executor, str(bundle_dir),
                   str(args.frames), str(args.threads)]
            out, peak = run_sampled(cmd, timeout=3600)
            row = json.loads(out.strip().splitlines()[-1])
            row["peak_pss_mib"] = peak / 2 ** 20
            results.append(row)
            print(f"{variant:<8} {executor:<6} {row['search_s_per_frame']:8.3f} s/frame  "
                  f"template {row['template_s']:6.2f} s  start-up {row['startup_s']:5.1f} s  "
                  f"peak {row['peak_pss_mib']:7.0f} MiB", flush=True)
    print(f"\n{'variant':<8} {'Lava s/frame':>12} {'torch s/frame':>13} {'ratio':>6} {'numpy s/frame':>13} "
          f"{'Lava MiB':>9} {'torch MiB':>9} {'ratio':>6}")
    for variant in args.variants:
        row = {r["executor"]: r for r in results if r["variant"] == variant}
        lava, ref, nump = row["lava"], row["torch"], row["numpy"]
        print(f"{variant:<8} {lava['search_s_per_frame']:12.3f} {ref['search_s_per_frame']:13.3f} "
              f"{lava['search_s_per_frame'] / ref['search_s_per_frame']:6.2f} {nump['search_s_per_frame']:13.3f} "
              f"{lava['peak_pss_mib']:9.0f} {ref['peak_pss_mib']:9.0f} {lava['peak_pss_mib'] / ref['peak_pss_mib']:6.2f}")
    meta = {"cpu_count": os.cpu_count(), "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(), "frames": args.frames, "threads": args.threads,
            "sequence": str(SEQUENCE)}
    write_text_atomic(args.out, json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    print(f"\n(1-min load average {load_start[0]:.1f} at the start, {meta['load_average_at_end'][0]:.1f} at the end, "
          f"{meta['cpu_count']} CPUs; other jobs share them) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
