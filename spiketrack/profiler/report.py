"""Energy report: report.json (every figure and input) and a self-contained report.html.

Inputs are generic: one counts record evaluated under one or more hardware profiles
(`ProfileResult`s), the TransT summary (`transt.transt_summary`) and the paper's figures
(`paper_figures`); optionally the run's context (weights, sequence, frame rate, per-frame
totals: `spiketrack.profiler.run.run_context`) and the template encoder's results, priced per
encoding. Every number printed can be traced to the counts and profile figures stored beside
it in report.json.
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
                "variant": result.counts.variant, "weights": result.counts.weights,
                "profile": result.profile.name, "model": b.model, "per_frame_j": b.per_frame_j,
                "total_j": b.total_j, "transt_profile": base["profile"] if base else None,
                "transt_per_frame_j": transt_j,
                "ratio_to_transt": b.per_frame_j / transt_j if transt_j else None,
                "paper_ratio": paper["ratio"],
            })
    return rows


def _results_data(results: list[ProfileResult]) -> list[dict[str, Any]]:
    return [{"profile": r.profile.name, "profile_path": r.profile.path,
             "breakdowns": [b.to_dict() for b in r.breakdowns], "skipped": r.skipped} for r in results]


def template_rows(template: list[ProfileResult]) -> list[dict[str, Any]]:
    """One row per (profile, model) of the template encoder: joules per encoding."""
    return [{"profile": r.profile.name, "model": b.model, "per_encoding_j": b.per_frame_j,
             "encodings": b.frames, "total_j": b.total_j} for r in template for b in r.breakdowns]


def report_data(results: list[ProfileResult], transt: dict[str, Any], paper: dict[str, Any],
                context: dict[str, Any] | None = None,
                template: list[ProfileResult] | None = None) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data."""
    counts = _common_counts(results)
    data = {
        "context": context or {},
        "inputs": {"counts": counts.to_dict()},
        "profiles": [r.profile.to_dict() for r in results],
        "results": _results_data(results),
        "transt": transt,
        "paper": paper,
        "comparison": comparison_rows(results, transt, paper),
    }
    if template:
        data["inputs"]["template_counts"] = _common_counts(template).to_dict()
        data["template"] = {"results": _results_data(template), "per_encoding": template_rows(template)}
    return data


def write_report(out_dir: str | Path, results: list[ProfileResult], transt: dict[str, Any],
                 paper: dict[str, Any], context: dict[str, Any] | None = None,
                 template: list[ProfileResult] | None = None) -> tuple[Path, Path]:
    """Write report.json and report.html into `out_dir` (each atomically); return their paths."""
    out_dir = Path(out_dir)
    data = report_data(results, transt, paper, context, template)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    write_text_atomic(json_path, json.dumps(data, indent=1) + "\n")
    write_text_atomic(html_path, render_html(results, data, template))
    return json_path, html_path


def weights_statement(counts: CountsRecord) -> str:
    """Which weights produced the figures; procedural weights said plainly."""
    text = (f"weights: {counts.weights or 'not stated in the counts'} "
            f"(checkpoint: {counts.checkpoint or 'not stated'})")
    if "procedural" in counts.weights.lower():
        text += (". WARNING: PROCEDURAL (untrained) weights — the firing rates and energies describe this "
                 "untrained network, not the trained SpikeTrack")
    return text


def markdown_summary(results: list[ProfileResult], transt: dict[str, Any], paper: dict[str, Any],
                     context: dict[str, Any] | None = None,
                     template: list[ProfileResult] | None = None) -> str:
    """Short Markdown table for stdout: energy per frame per (profile, model) next to TransT and 1/26."""
    counts = _common_counts(results)
    macs = transt["macs"]
    context = context or {}
    lines = [
        f"Energy of {counts.variant} per search frame ({counts.source} counts, {counts.frames} search frames, weights: {counts.weights})",
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
    if template:
        lines += ["", "Template encoder (run at initialisation and template updates), per encoding:", "",
                  "| profile | model | mJ / encoding | encodings |", "|---|---|---|---|"]
        lines += [f"| {r['profile']} | {r['model']} | {r['per_encoding_j'] * 1e3:.4g} | {r['encodings']} |"
                  for r in template_rows(template)]
    lines += ["", *skipped, "", transt_line, f"Paper: {paper['claim']} — {paper['note']}"]
    if context:
        rate = context.get("search_mean_firing_rate")
        lines += ["", f"Counts: {context.get('counts_source', counts.source)}; "
                      f"mean firing rate (search) {'-' if rate is None else f'{rate:.4f}'} spikes/neuron/step; "
                      f"frame rate {context.get('frame_rate_fps')} fps (static power time)."]
    lines += [weights_statement(counts) + "."]
    return "\n".join(lines) + "\n"


def render_html(results: list[ProfileResult], data: dict[str, Any],
                template: list[ProfileResult] | None = None) -> str:
    """Self-contained HTML: tables, formulas and base64-embedded PNG charts."""
    counts = _common_counts(results)
    paper, transt, context = data["paper"], data["transt"], data.get("context", {})
    per_frame = context.get("per_frame") or []
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>SpikeTrack energy report</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;"
        "margin:8px 0}td,th{border:1px solid #999;padding:3px 6px;font-size:13px;vertical-align:top}"
        "img{max-width:100%}.warn{background:#fdd;border:2px solid #c00;padding:6px}</style></head><body>",
        f"<h1>SpikeTrack energy report — {_e(counts.variant)}</h1>",
        _weights_banner(counts),
        _table(["variant", "checkpoint", "weights", "counts source", "search frames", "layers"],
               [[counts.variant, counts.checkpoint, counts.weights, counts.source, counts.frames,
                 len(counts.layers)]]),
        _context_table(context),
        "<h2>Energy per frame and comparison with TransT</h2>",
        f"<p>Per-frame energy is the search path's per search step (template encoder cached), the "
        f"convention of TransT's per-frame figure. Paper: {_e(paper['claim'])} ({_e(paper['source'])}). "
        f"{_e(paper['note'])}</p>",
        _comparison_table(data["comparison"], paper),
        _skipped(results),
        "<h2>The paper's figures beside ours</h2>",
        _paper_table(data["comparison"], paper),
        _template_section(template),
        "<h2>TransT (architecture-only count)</h2>",
        _transt_table(transt),
        "<h2>Charts</h2>",
        _img(_firing_rate_chart(counts), "per-layer firing rate"),
        _img(_operations_chart(counts), "per-layer operations"),
        *(_img(_layer_energy_chart(r), f"per-layer energy, {r.profile.name}") for r in results if r.breakdowns),
        _img(_stacked_chart(results), "energy breakdown per model"),
        *([_img(_per_frame_chart(per_frame), "operations per search frame")] if len(per_frame) > 1 else []),
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
    body = [[r.get("variant", "-"), r["profile"], r["model"], f"{r['per_frame_j'] * 1e3:.4g}",
             f"{_mj(r['transt_per_frame_j'])} ({r['transt_profile'] or '-'})",
             _ratio(r["ratio_to_transt"]), f"{paper['ratio_text']} ({paper['ratio']:.4f})"] for r in rows]
    return _table(["variant", "profile", "energy model", "SpikeTrack mJ / frame", "TransT mJ / frame (priced on)",
                   "SpikeTrack ÷ TransT", "paper (LaSOT)"], body)


def _paper_table(rows: list[dict[str, Any]], paper: dict[str, Any]) -> str:
    """The one published figure (1/26) next to our ratio under the paper's convention."""
    ours = [r for r in rows if r["model"] == "paper" and r["ratio_to_transt"] is not None]
    body = [["SpikeTrack ÷ TransT energy", f"{paper['ratio_text']} = {paper['ratio']:.4f} "
             f"({paper['benchmark']}, variant not stated)",
             f"{_ratio(r['ratio_to_transt'])} ({r.get('variant', '-')}, {r['profile']}, 'paper' model)",
             r.get("weights", "")] for r in ours]
    body += [["SpikeTrack energy per frame", "not published", f"{r['per_frame_j'] * 1e6:.4g} µJ ({r['profile']})",
              r.get("weights", "")] for r in ours]
    return _table(["figure", "paper", "ours", "our weights"], body) if body else (
        "<p>No profile with E_MAC/E_AC was given: the paper's convention could not be applied.</p>")


def _weights_banner(counts: CountsRecord) -> str:
    css = " class='warn'" if "procedural" in counts.weights.lower() else ""
    return f"<p{css}><b>Which weights produced these figures:</b> {_e(weights_statement(counts))}.</p>"


def _context_table(context: dict[str, Any]) -> str:
    """Run inputs and assumptions (absent for reports built from bare records)."""
    if not context:
        return ""
    keys = ("counts_source", "sequence", "frames_tracked", "search_frames", "template_encodings",
            "frame_rate_fps", "frame_rate_note", "sim_time_s", "chips", "profile_paths", "counts_files",
            "convention")
    rows = [[k, _plain(context[k])] for k in keys if context.get(k) is not None]
    per_frame = context.get("search_per_frame") or {}
    rate = context.get("search_mean_firing_rate")
    rows.append(["search path per frame", ", ".join(f"{k} {v:,.0f}" for k, v in per_frame.items())
                 + ("" if rate is None else f", mean firing rate {rate:.4f}")])
    if context.get("template_per_encoding"):
        rate = context.get("template_mean_firing_rate")
        rows.append(["template encoder per encoding",
                     ", ".join(f"{k} {v:,.0f}" for k, v in context["template_per_encoding"].items())
                     + ("" if rate is None else f", mean firing rate {rate:.4f}")])
    return "<h2>Run</h2>" + _table(["input / assumption", "value"], rows)


def _plain(value: Any) -> str:
    """Dicts and lists as short text for tables."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _template_section(template: list[ProfileResult] | None) -> str:
    if not template:
        return ""
    rows = [[r["profile"], r["model"], f"{r['per_encoding_j'] * 1e3:.4g}", r["encodings"]]
            for r in template_rows(template)]
    return ("<h2>Template encoder (per encoding, not included in the per-frame figures)</h2>"
            + _table(["profile", "energy model", "mJ / encoding", "encodings in the run"], rows))


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


def _label_layers(ax, ids: list[str]) -> None:
    """Layer ids as tick labels when few; else index ticks (ids in report.json)."""
    if len(ids) <= MAX_TICK_LABELS:
        ax.set_xticks(range(len(ids)))
        ax.set_xticklabels(ids, rotation=90, fontsize=6)
    else:
        ax.set_xlim(-0.5, len(ids) - 0.5)
        ax.set_xlabel(f"layer index, {len(ids)} layers in record order (ids in report.json)")


def _per_layer_chart(title: str, series: dict[str, list[float]], ids: list[str],
                     linthresh: float | None = None) -> Figure:
    """Per-layer values of one or more series: grouped bars labelled by layer id when there are few
    layers; else one panel per series drawn as a filled step outline (fast, readable at 400+ layers).
    `linthresh`: symlog y axis with this linear threshold (None: linear)."""
    few = len(ids) <= MAX_TICK_LABELS
    panels = 1 if few else len(series)
    fig = Figure(figsize=(min(max(6.0, 0.15 * len(ids)), 16.0), 1.0 + 2.2 * panels), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(title)
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series.items()):
        ax = axes[0 if few else k]
        if few:
            ax.bar([i + k * width for i in range(len(values))], values, width, label=name)
        else:
            ax.stairs(values, [i - 0.5 for i in range(len(values) + 1)], fill=True, color=f"C{k}", label=name)
            ax.legend(fontsize=7, loc="upper right")
        if linthresh is not None:
            ax.set_yscale("symlog", linthresh=linthresh)
    if few and len(series) > 1:
        axes[0].legend(fontsize=7)
    _label_layers(axes[-1], ids)
    return fig


def _firing_rate_chart(counts: CountsRecord) -> Figure:
    rated = [(l.layer_id, l.firing_rate(counts.frames)) for l in counts.layers if l.neurons > 0]
    return _per_layer_chart("mean spike count per neuron per timestep (0..4), neuron layers",
                            {"firing rate": [r for _, r in rated]}, [i for i, _ in rated])


def _operations_chart(counts: CountsRecord) -> Figure:
    series = {name: [getattr(l, name) / counts.frames for l in counts.layers] for name in OPERATION_FIELDS}
    return _per_layer_chart("operations per layer per frame (symlog)", series,
                            [l.layer_id for l in counts.layers], linthresh=1.0)


def _layer_energy_chart(result: ProfileResult) -> Figure:
    series = {b.model: [l.total_j / b.frames for l in b.layers] for b in result.breakdowns}
    return _per_layer_chart(f"energy per layer per frame, J ({result.profile.name}; symlog)", series,
                            [l.layer_id for l in result.counts.layers], linthresh=1e-12)


def _per_frame_chart(per_frame: list[dict[str, int]]) -> Figure:
    """Synops, spikes, attention ops and dense MACs of every search step."""
    fig = Figure(figsize=(7.0, 3.5))
    ax = fig.subplots()
    ax.set_title("operations per search frame")
    frames = range(1, len(per_frame) + 1)
    for name in ("synops", "attention_ops", "dense_macs", "spikes"):
        ax.plot(frames, [f[name] for f in per_frame], marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("search frame")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
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
    for i, total in enumerate(bottoms):
        ax.annotate(f"{total:.3g}", (i, total), ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, max(bottoms, default=0.0) * 1.12 or 1.0)  # room for the totals
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([label for label, _, _ in bars], fontsize=7)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig
