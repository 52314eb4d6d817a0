"""Layer-by-layer exactness of the Lava simulation for s256_t1 on one real frame (or any bundle).

Template crop of frame 0 and search crop of frame 1 of a sequence (around the first ground-truth
box), template and search graphs run in Lava with tracing (deploy.lava), every node compared with
the fixed-point PyTorch reference (converters.fixed_point.run_fixed). Prints one line per node and a
summary; exit status 1 when any node differs.

    .venv/bin/python scripts/check_lava_s256.py [--bundle DIR] [--sequence DIR] [--calibration N]

Without --bundle, an s256_t1 bundle is exported first (default weights: procedural unless a
checkpoint is shipped) with N calibration images (default 1, quick) into out/lava_s256_bundle.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import deploy.lava_compat  # noqa: E402,F401  (before any Lava import)


def export_default(variant: str, out: Path, calibration: int) -> Path:
    """Export `variant` with the default weights into `out` (skipped when a bundle is already there)."""
    from converters.export_lava import export_bundle
    from converters.quantize import default_calibration_frames
    from spiketrack.default_model import resolve_model

    if (out / "manifest.json").is_file():
        return out
    resolved = resolve_model(None, variant)
    print(f"exporting {variant} ({resolved.weights}) to {out} ...", flush=True)
    export_bundle(resolved.model, out, default_calibration_frames(limit=calibration))
    return out


def crops(sequence: Path, size: int):
    """Normalized template (frame 0) and search (frame 1) crops around the first box, (1, 3, S, S)."""
    from spiketrack.data.datasets import load_sequence
    from spiketrack.data.images import read_image
    from spiketrack.tracker.preprocessing import normalize_crop, sample_target

    seq = load_sequence(sequence)
    z, _ = sample_target(read_image(seq.frames[0]), seq.init_box, 4.0, size)
    x, _ = sample_target(read_image(seq.frames[1]), seq.init_box, 4.0, size)
    return normalize_crop(z).numpy()[None], normalize_crop(x).numpy()[None]


def compare(graph, lava: dict, ref) -> list[tuple[str, str, tuple, bool, int]]:
    """(node id, op, shape, equal, max |difference|) per node (memory inputs skipped)."""
    import numpy as np

    rows = []
    for node in graph.nodes:
        if node.op == "input" and node.attrs.get("kind") == "memory":
            continue
        a, b = lava[node.id], ref.values[node.id].numpy()
        diff = int(np.abs(a - b).max()) if a.shape == b.shape and a.size else -1
        rows.append((node.id, node.op, tuple(node.shape), a.shape == b.shape and np.array_equal(a, b), diff))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="export bundle (default: export s256_t1 first)")
    parser.add_argument("--variant", default="s256_t1")
    parser.add_argument("--sequence", type=Path, default=REPO.parent / "shared" / "data" / "sequences" / "Crossing")
    parser.add_argument("--calibration", type=int, default=1, help="calibration images when exporting")
    parser.add_argument("--quiet", action="store_true", help="print only differing nodes and the summary")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(2)
    from converters.export_lava import load_export
    from converters.fixed_point import run_fixed
    from deploy.lava.runner import LavaRunner
    from deploy.simulate import bundle_config

    bundle_dir = args.bundle or export_default(args.variant, REPO / "out" / f"lava_{args.variant}_bundle",
                                               args.calibration)
    bundle, _ = load_export(bundle_dir)
    cfg = bundle_config(bundle, bundle_dir)
    z, x = crops(args.sequence, cfg.search_size)
    templates = np.repeat(z, cfg.num_templates, axis=0)
    print(f"bundle {bundle_dir} ({bundle.variant}, {len(bundle.template.nodes)} template / "
          f"{len(bundle.search.nodes)} search nodes), sequence {args.sequence.name} frames 0 and 1")

    runner = LavaRunner(bundle, trace=True)
    start = time.perf_counter()
    memories = runner.encode_templates(templates)
    lava_t = runner.node_outputs("template")
    t_template = time.perf_counter() - start
    start = time.perf_counter()
    runner.run_frame(x)
    lava_s = runner.node_outputs("search")
    t_search = time.perf_counter() - start
    startup = runner.startup_seconds
    runner.close()
    print(f"Lava: {len(runner.template.specs)} + {len(runner.search.specs)} processes, start-up {startup:.1f} s, "
          f"template step {t_template - runner.template.startup_seconds:.2f} s, "
          f"search step {t_search - runner.search.startup_seconds:.2f} s (traced)")

    start = time.perf_counter()
    ref_t = run_fixed(bundle.template, {"templates": torch.from_numpy(templates)})
    ref_s = run_fixed(bundle.search, {"search": torch.from_numpy(x),
                                      **{k: torch.from_numpy(v) for k, v in memories.items()}})
    print(f"fixed-point reference (PyTorch): {time.perf_counter() - start:.1f} s for both graphs")

    failures = 0
    for name, graph, lava, ref in (("template", bundle.template, lava_t, ref_t), ("search", bundle.search, lava_s, ref_s)):
        rows = compare(graph, lava, ref)
        bad = [r for r in rows if not r[3]]
        failures += len(bad)
        print(f"\n{name} graph: {len(rows) - len(bad)}/{len(rows)} nodes bit-exact")
        for nid, op, shape, ok, diff in rows:
            if not args.quiet or not ok:
                print(f"  {'OK  ' if ok else 'DIFF'} {nid:<58} {op:<10} {'x'.join(map(str, shape)):<16}"
                      f"{'' if ok else f' max|diff| {diff}'}")
    print(f"\nRESULT: {'all nodes bit-exact' if failures == 0 else f'{failures} nodes differ'} "
          f"({bundle.variant}, real frame)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
