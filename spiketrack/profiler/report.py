"""Energy report: report.json (every figure and input) and a self-contained report.html.

Inputs are generic: one counts record evaluated under one or more hardware profiles
(`ProfileResult`s), the TransT summary (`transt.transt_summary`) and the paper's figures
(`paper_figures`). Every number printed can be traced to the counts and profile figures
stored beside it in report.json.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure

from spiketrack.profiler.counts import CountsRecord
from spiketrack.profiler.energy import ProfileResult
from spiketrack.utils.atomic import write_text_atomic

OPERATION_FIELDS = ("synops", "dense_macs", "attention_ops", "neuron_updates", "host_ops")
MAX_TICK_LABELS = 80


def paper_figures() -> dict[str, Any]:
    """The only published SpikeTrack energy figure: 1/26 of TransT's energy on LaSOT."""
    return {
        "claim": "SpikeTrack surpasses TransT on LaSOT while consuming only 1/26 of its energy",
        "ratio": 1 / 26,
        "ratio_text": "1/26",
        "benchmark": "LaSOT",
        "source": "SpikeTrack paper abstract, arXiv 2602.23963 (CVPR 2026); spec §12 and §18",
        "note": ("The only published energy ratio. Neither the formula nor the variant behind it is in "
                 "the official repository; presumably the spike-driven-transformer convention "
                 "(E_MAC 4.6 pJ, E_AC 0.9 pJ at 45 nm), i.e. our 'paper' model on cmos45nm."),
    }


def comparison_rows(results: list[ProfileResult], transt: dict[str, Any],
                    paper: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (profile, model): SpikeTrack J/frame, TransT J/frame, their ratio, the paper's ratio.

    TransT is priced with the same profile when it has E_MAC, else with the first profile that has.
    """
    by_profile = {e["profile"]: e for e in transt["energy"]}
    fallback = transt["energy"][0] if transt["energy"] else None
    rows = []
    for result in results:
        base = by_profile.get(result.profile.name, fallback)
        for b in result.breakdowns:
            transt_j = base["per_frame_cached_template_j"] if base else None
            rows.append({
                "profile": result.profile.name, "model": b.model, "per_frame_j": b.per_frame_j,
                "total_j": b.total_j, "transt_profile": base["profile"] if base else None,
                "transt_per_frame_j": transt_j,
                "ratio_to_transt": b.per_frame_j / transt_j if transt_j else None,
                "paper_ratio": paper["ratio"],
            })
    return rows


def report_data(results: list[ProfileResult], transt: dict[str, Any], paper: dict[str, Any]) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data."""
    counts = _common_counts(results)
    return {
        "inputs": {"counts": counts.to_dict()},
        "profiles": [r.profile.to_dict() for r in results],
        "results": [{"profile": r.profile.name, "profile_path": r.profile.path,
                     "breakdowns": [b.to_dict() for b in r.breakdowns], "skipped": r.skipped}
                    for r in results],
        "transt": transt,
        "paper": paper,
        "comparison": comparison_rows(results, transt, paper),
    }


def write_report(out_dir: str | Path, results: list[ProfileResult], transt: dict[str, Any],
                 paper: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.json and report.html into `out_dir` (each atomically); return their paths."""
    out_dir = Path(out_dir)
    data = report_data(results, transt, paper)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    write_text_atomic(json_path, json.dumps(data, indent=1) + "\n")
    write_text_atomic(html_path, render_html(results, data))
    return json_path, html_path


def markdown_summary(results: list[ProfileResult], transt: dict[str, Any], paper: dict[str, Any]) -> str:
    """Short Markdown table for stdout: energy per frame per (profile, model) next to TransT and 1/26."""
    counts = _common_counts(results)
    macs = transt["macs"]
    lines = [
        f"Energy of {counts.variant} ({counts.source} counts, {counts.frames} frames, weights: {counts.weights})",
        "",
        "| profile | model | mJ / frame | TransT mJ / frame (profile) | SpikeTrack / TransT | paper |",
        "|---|---|---|---|---|---|",
    ]
    for row in comparison_rows(results, transt, paper):
        lines.append(f"| {row['profile']} | {row['model']} | {row['per_frame_j'] * 1e3:.4g} | "
                     f"{_mj(row['transt_per_frame_j'])} ({row['transt_profile'] or '-'}) | "
                     f"{_ratio(row['ratio_to_transt'])} | {paper['ratio_text']} |")
    skipped = [f"- {r.profile.name}: {model} model skipped ({reason})" for r in results
               for model, reason in r.skipped.items()]
    transt_line = (f"TransT: {macs['per_frame_cached_template'] / 1e9:.2f} GMACs/frame (template cached), "
                   f"{macs['per_frame_recomputed_template'] / 1e9:.2f} GMACs/frame (template recomputed).")
    lines += ["", *skipped, "", transt_line, f"Paper: {paper['claim']} — {paper['note']}"]
    return "\n".join(lines) + "\n"


def render_html(results: list[ProfileResult], data: dict[str, Any]) -> str:
    """Self-contained HTML: tables, formulas and base64-embedded PNG charts."""
    counts = _common_counts(results)
    paper, transt = data["paper"], data["transt"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>SpikeTrack energy report</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;"
        "margin:8px 0}td,th{border:1px solid #999;padding:3px 6px;font-size:13px;vertical-align:top}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>SpikeTrack energy report — {_e(counts.variant)}</h1>",
        _table(["variant", "checkpoint", "weights", "counts source", "frames", "layers"],
               [[counts.variant, counts.checkpoint, counts.weights, counts.source, counts.frames,
                 len(counts.layers)]]),
        "<h2>Energy per frame and comparison with TransT</h2>",
        f"<p>Paper: {_e(paper['claim'])} ({_e(paper['source'])}). {_e(paper['note'])}</p>",
        _comparison_table(data["comparison"], paper),
        _skipped(results),
        "<h2>TransT (architecture-only count)</h2>",
        _transt_table(transt),
        "<h2>Charts</h2>",
        _img(_firing_rate_chart(counts), "per-layer firing rate"),
        _img(_operations_chart(counts), "per-layer operations"),
        *(_img(_layer_energy_chart(r), f"per-layer energy, {r.profile.name}") for r in results if r.breakdowns),
        _img(_stacked_chart(results), "energy breakdown per model"),
        "<h2>Formulas</h2>",
        _table(["profile", "model", "formula and assumptions"],
               [[r.profile.name, b.model, b.formula] for r in results for b in r.breakdowns]),
        "<h2>Hardware profiles</h2>",
        *(_profile_table(p) for p in data["profiles"]),
        "<p>All figures, per-layer energies and inputs: report.json.</p></body></html>",
    ]
    return "\n".join(parts)


def _common_counts(results: list[ProfileResult]) -> CountsRecord:
    """The one counts record all results were computed from (ValueError if they differ)."""
    if not results:
        raise ValueError("no profile results to report")
    counts = results[0].counts
    if any(r.counts != counts for r in results[1:]):
        raise ValueError("all profile results of one report must come from the same counts record")
    return counts


def _comparison_table(rows: list[dict[str, Any]], paper: dict[str, Any]) -> str:
    body = [[r["profile"], r["model"], f"{r['per_frame_j'] * 1e3:.4g}",
             f"{_mj(r['transt_per_frame_j'])} ({r['transt_profile'] or '-'})",
             _ratio(r["ratio_to_transt"]), f"{paper['ratio_text']} ({paper['ratio']:.4f})"] for r in rows]
    return _table(["profile", "energy model", "SpikeTrack mJ / frame", "TransT mJ / frame (priced on)",
                   "SpikeTrack ÷ TransT", "paper (LaSOT)"], body)


def _transt_table(transt: dict[str, Any]) -> str:
    macs = transt["macs"]
    rows = [[name, f"{n / 1e9:.3f}"] for name, n in macs["macs"].items()]
    rows += [["per frame, template cached (TransT tracker)", f"{macs['per_frame_cached_template'] / 1e9:.3f}"],
             ["per frame, template recomputed", f"{macs['per_frame_recomputed_template'] / 1e9:.3f}"]]
    energy = [[e["profile"], f"{e['e_mac_j'] * 1e12:.3g}", _mj(e["per_frame_cached_template_j"]),
               _mj(e["per_frame_recomputed_template_j"]), e["formula"]] for e in transt["energy"]]
    return (f"<p>Template {macs['template_size']}², search {macs['search_size']}², feature stride "
            f"{macs['feature_stride']}. Counter: {_e(macs['counter'])}. {_e(macs['note'])}</p>"
            + _table(["part", "GMACs"], rows)
            + _table(["profile", "E_MAC pJ", "mJ / frame (cached)", "mJ / frame (recomputed)", "formula"], energy))


def _skipped(results: list[ProfileResult]) -> str:
    rows = [[r.profile.name, model, reason] for r in results for model, reason in r.skipped.items()]
    return _table(["profile", "model not run", "reason"], rows) if rows else ""


def _profile_table(profile: dict[str, Any]) -> str:
    rows = [[key, f"{f['value']:g}", f["unit"], "yes" if f["estimate"] else "", f["source"], f["note"] or ""]
            for key, f in profile["figures"].items()]
    return (f"<h3>{_e(profile['name'])} <small>({_e(profile['path'])})</small></h3>"
            f"<p>{_e(profile['description'])}</p>"
            + _table(["figure", "value", "unit", "estimate", "source", "note"], rows))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _mj(joules: float | None) -> str:
    return "-" if joules is None else f"{joules * 1e3:.4g}"


def _ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.4f} (1/{1 / ratio:.1f})" if ratio > 0 else "0"


def _img(fig: Figure, alt: str) -> str:
    """The figure as an inline base64 PNG <img>."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return (f"<h3>{_e(alt)}</h3><img alt='{_e(alt)}' "
            f"src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}'>")


def _layer_axes(n_layers: int, title: str):
    """A wide single-axes figure for per-layer charts."""
    fig = Figure(figsize=(min(max(6.0, 0.15 * n_layers), 30.0), 3.5))
    ax = fig.subplots()
    ax.set_title(title)
    return fig, ax


def _label_layers(ax, ids: list[str]) -> None:
    ax.set_xticks(range(len(ids)))
    if len(ids) <= MAX_TICK_LABELS:
        ax.set_xticklabels(ids, rotation=90, fontsize=6)
    else:
        ax.set_xticklabels([])
        ax.set_xlabel(f"{len(ids)} layers in record order (ids in report.json)")


def _firing_rate_chart(counts: CountsRecord) -> Figure:
    rated = [(l.layer_id, l.firing_rate(counts.frames)) for l in counts.layers if l.neurons > 0]
    fig, ax = _layer_axes(len(rated), "mean spike count per neuron per timestep (0..4)")
    ax.bar(range(len(rated)), [r for _, r in rated])
    _label_layers(ax, [i for i, _ in rated])
    return fig


def _operations_chart(counts: CountsRecord) -> Figure:
    fig, ax = _layer_axes(len(counts.layers), "operations per layer (all frames)")
    width = 0.8 / len(OPERATION_FIELDS)
    for k, name in enumerate(OPERATION_FIELDS):
        values = [getattr(l, name) for l in counts.layers]
        ax.bar([i + k * width for i in range(len(values))], values, width, label=name)
    ax.set_yscale("symlog")
    ax.legend(fontsize=7)
    _label_layers(ax, [l.layer_id for l in counts.layers])
    return fig


def _layer_energy_chart(result: ProfileResult) -> Figure:
    ids = [l.layer_id for l in result.counts.layers]
    fig, ax = _layer_axes(len(ids), f"energy per layer, J ({result.profile.name})")
    width = 0.8 / len(result.breakdowns)
    for k, b in enumerate(result.breakdowns):
        ax.bar([i + k * width for i in range(len(ids))], [l.total_j for l in b.layers], width, label=b.model)
    ax.set_yscale("symlog", linthresh=1e-12)
    ax.legend(fontsize=7)
    _label_layers(ax, ids)
    return fig


def _stacked_chart(results: list[ProfileResult]) -> Figure:
    bars = [(f"{r.profile.name}\n{b.model}", b.component_totals(), b.frames) for r in results for b in r.breakdowns]
    fig = Figure(figsize=(max(5.0, 1.3 * len(bars)), 4.0))
    ax = fig.subplots()
    ax.set_title("energy per frame by component, mJ")
    names = sorted({c for _, comps, _ in bars for c in comps})
    colours = colormaps["tab20"].colors
    bottoms = [0.0] * len(bars)
    for k, name in enumerate(names):
        heights = [comps.get(name, 0.0) / frames * 1e3 for _, comps, frames in bars]
        ax.bar(range(len(bars)), heights, bottom=bottoms, label=name, color=colours[k % len(colours)])
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([label for label, _, _ in bars], fontsize=7)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig
