#!/usr/bin/env python
"""Paper-method energy per frame of every official variant (procedural weights) and of `tiny`
(default model), next to TransT and the paper's 1/26.

Each variant tracks the first frames of a real sequence with the float tracker while counting
(`spiketrack.profiler.run.count_tracking`): frame 0 encodes the template, every later frame is one
search step. Energy per frame = the 'paper' model (E_MAC x dense MACs + E_AC x spike-driven ops)
on the search path under cmos45nm; TransT = its per-frame MACs (template cached) x E_MAC.
PROCEDURAL weights are untrained: their firing rates (and so the energies) are not those of the
trained SpikeTrack; the table says which weights every row used.

Usage: .venv/bin/python scripts/energy_table.py [--sequence DIR] [--frames-small 4] [--frames-base 2]
       [--variants s256_t1,...] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from spiketrack.errors import UserError
from spiketrack.profiler.counting import mean_firing_rate, totals
from spiketrack.profiler.energy import energy_paper
from spiketrack.profiler.profiles import load_profile
from spiketrack.profiler.report import paper_figures
from spiketrack.profiler.run import count_tracking, first_frames
from spiketrack.profiler.transt import count_transt_macs, transt_energy
from spiketrack.utils.atomic import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEQUENCE = REPO.parent / "shared" / "data" / "sequences" / "Crossing"
OFFICIAL = ("s256_t1", "s256_t3", "b256_t1", "b256_t3", "b384_t1", "b384_t3")


def variant_row(variant: str | None, seq_dir: Path, frames: int, profile: Any, transt_j: float) -> dict[str, Any]:
    """Count one variant on the first `frames` frames and price its search path per frame."""
    from spiketrack.default_model import resolve_model
    from spiketrack.models.procedural import load_procedural_weights
    from spiketrack.models import build_model

    if variant is None:  # the default model (shipped demo checkpoint, else procedural tiny)
        resolved = resolve_model(None, None)
        model, weights = resolved.model, resolved.weights
        ckpt = str(resolved.checkpoint) if resolved.checkpoint else "none"
    else:
        model = load_procedural_weights(build_model(variant))
        weights, ckpt = f"PROCEDURAL weights for {variant} (untrained, spec §17 generator)", "none"
    start = time.perf_counter()
    run = count_tracking(model, first_frames(seq_dir, frames), variant=model.cfg.name, checkpoint=ckpt,
                         weights=weights)
    search = run.search
    energy = energy_paper(search, profile).per_frame_j
    per_frame = {k: v / search.frames for k, v in totals(search.layers).items()}
    return {"variant": model.cfg.name, "weights": weights, "search_frames": search.frames,
            "mean_firing_rate": mean_firing_rate(search.layers), "synops": per_frame["synops"],
            "attention_ops": per_frame["attention_ops"], "dense_macs": per_frame["dense_macs"],
            "energy_uj": energy * 1e6, "transt_uj": transt_j * 1e6, "ratio": energy / transt_j,
            "paper_ratio": paper_figures()["ratio"], "seconds": time.perf_counter() - start}


def markdown(rows: list[dict[str, Any]], profile_name: str, seq_dir: Path) -> str:
    """The table as Markdown."""
    lines = [f"Paper-method energy per search frame on {seq_dir.name} under {profile_name} "
             "(E = E_MAC x dense MACs + E_AC x (synops + attention ops); per-frame figures are means over "
             "the search frames)", "",
             "| variant | weights used | search frames | mean firing rate | synops / frame | attention ops / frame "
             "| dense MACs / frame | energy µJ / frame | TransT µJ / frame | SpikeTrack ÷ TransT | paper |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['weights']} | {r['search_frames']} | {r['mean_firing_rate']:.4f} | "
                     f"{r['synops'] / 1e6:,.1f} M | {r['attention_ops'] / 1e6:,.2f} M | {r['dense_macs'] / 1e6:,.1f} M | "
                     f"{r['energy_uj']:,.1f} | {r['transt_uj']:,.0f} | {r['ratio']:.4f} (1/{1 / r['ratio']:.0f}) | 1/26 |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence", type=Path, default=DEFAULT_SEQUENCE)
    parser.add_argument("--frames-small", type=int, default=4, help="frames for s256_* and tiny (default 4)")
    parser.add_argument("--frames-base", type=int, default=2, help="frames for b256_*/b384_* (default 2: one search step)")
    parser.add_argument("--variants", default=",".join(OFFICIAL), help="comma-separated official variants")
    parser.add_argument("--profile", type=Path, default=REPO / "hw_profiles" / "cmos45nm.yaml")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        profile = load_profile(args.profile)
        transt_j = transt_energy(profile, count_transt_macs())["per_frame_cached_template_j"]
        rows = []
        for variant in [v for v in args.variants.split(",") if v] + [None]:
            frames = args.frames_base if variant and variant.startswith("b") else args.frames_small
            rows.append(variant_row(variant, args.sequence, frames, profile, transt_j))
            print(f"{rows[-1]['variant']}: {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    except UserError as err:
        print(f"energy_table: error: {err}", file=sys.stderr)
        return 2
    print(markdown(rows, profile.name, args.sequence), end="")
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
