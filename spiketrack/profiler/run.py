"""The `spiketrack profile` library function: count a run (or read a Lava counts file), price it
under hardware profiles, compare with TransT and write the report.

Convention (the paper's): energy per frame is the SEARCH path's, averaged over the search
steps; the template encoder (run at initialisation and at template updates) is priced
separately, per encoding. Tracking N frames = 1 template encoding on frame 0 (plus any template
updates) + N - 1 search steps. The neuromorphic model's static power is charged for the time
the frames take at a stated real-time frame rate: (N - 1) / fps to the search path, 1 / fps
(the initialisation frame) to the template encoder.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spiketrack.errors import UserError
from spiketrack.profiler.counting import (COUNTS_FILE, TEMPLATE_COUNTS_FILE, CountingModel, mean_firing_rate,
                                          totals)
from spiketrack.profiler.counts import CountsRecord, check_variant, from_json
from spiketrack.profiler.energy import ProfileResult, evaluate_profile
from spiketrack.profiler.profiles import HardwareProfile, load_profile
from spiketrack.profiler.report import markdown_summary, paper_figures, write_report
from spiketrack.profiler.transt import transt_summary

DEFAULT_FPS = 30.0


@dataclass
class CountedRun:
    """Counts of one tracked run (search steps; template encodings) plus what produced them."""

    search: CountsRecord
    template: CountsRecord
    per_frame: list[dict[str, int]] = field(default_factory=list)
    per_encoding: list[dict[str, int]] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ProfileRun:
    """Everything `profile` computed and wrote."""

    search: CountsRecord
    template: CountsRecord | None
    results: list[ProfileResult]
    template_results: list[ProfileResult]
    transt: dict[str, Any]
    context: dict[str, Any]
    summary: str
    report_json: Path
    report_html: Path
    counts_files: list[Path]


def load_profiles(paths: list[Path]) -> list[HardwareProfile]:
    """Validated profiles in the given order; UserError when none is given or two share a name."""
    if not paths:
        raise UserError("at least one --profile hw_profiles/<name>.yaml is needed")
    profiles = [load_profile(p) for p in paths]
    names = [p.name for p in profiles]
    dup = next((p for p in profiles if names.count(p.name) > 1), None)
    if dup is not None:
        raise UserError(f"profile name {dup.name!r} is given twice", dup.path)
    return profiles


def expected_variant(checkpoint: Path | None, variant: str | None) -> str:
    """Variant the user's model is: the checkpoint's (which must equal `variant` if both are given),
    else `variant`, else the default model's (the shipped demo checkpoint, or tiny)."""
    from spiketrack.checkpoint import load_checkpoint
    from spiketrack.default_model import DEFAULT_CHECKPOINT
    from spiketrack.models import get_config

    if checkpoint is not None:
        found = load_checkpoint(checkpoint).variant
        if variant is not None and variant != found:
            raise UserError(f"checkpoint is variant '{found}', not '{variant}'", checkpoint)
        return found
    if variant is not None:
        return get_config(variant).name
    return load_checkpoint(DEFAULT_CHECKPOINT).variant if DEFAULT_CHECKPOINT.is_file() else "tiny"


def first_frames(sequence_dir: Path, frames: int):
    """The sequence cut to its first `frames` frames; UserError if it is shorter or frames < 2."""
    from spiketrack.data.datasets import load_sequence

    if frames < 2:
        raise UserError(f"--frames must be at least 2 (frame 0 initialises, later frames are tracked), got {frames}")
    seq = load_sequence(sequence_dir)
    if len(seq) < frames:
        raise UserError(f"sequence has {len(seq)} frames, fewer than --frames {frames}", sequence_dir)
    return dataclasses.replace(seq, frames=seq.frames[:frames], ground_truth=seq.ground_truth[:frames],
                               absent=seq.absent[:frames])


def count_tracking(model: Any, seq: Any, *, variant: str, checkpoint: str, weights: str) -> CountedRun:
    """Track `seq` with the float tracker while counting every template encoding and search step."""
    from converters.graph import build_float_graphs
    from spiketrack.models.fuse import fuse_for_inference
    from spiketrack.tracker.runner import run_tracker_on_sequence
    from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker, TrackerParams

    template_graph, search_graph = build_float_graphs(model)
    counting = CountingModel(fuse_for_inference(model), {"template": template_graph, "search": search_graph})
    params = TrackerParams.from_model_cfg(model.cfg).for_dataset(seq.name)
    start = time.perf_counter()
    boxes, _fps = run_tracker_on_sequence(SpikeTrackTracker(counting, params), seq, progress=False)
    meta = {"variant": variant, "checkpoint": checkpoint, "weights": weights}
    return CountedRun(counting.record("search", **meta), counting.record("template", **meta),
                      counting.tallies["search"].per_run, counting.tallies["template"].per_run,
                      boxes.tolist(), time.perf_counter() - start)


def read_simulation(path: Path, variant: str) -> tuple[CountsRecord, CountsRecord | None, Path | None]:
    """The search counts `path` (a simulator's counts.json) and, when beside it, its template counts
    (counts_template.json); both must be of `variant` (UserError naming the file)."""
    if Path(path).name == TEMPLATE_COUNTS_FILE:
        raise UserError(f"this is a template-encoder counts file; pass the search counts ({COUNTS_FILE})", path)
    search = from_json(path)
    check_variant(search, variant, path)
    template_path = Path(path).with_name(TEMPLATE_COUNTS_FILE)
    if not template_path.is_file():
        return search, None, None
    template = from_json(template_path)
    check_variant(template, variant, template_path)
    return search, template, template_path


def price(record: CountsRecord | None, profiles: list[HardwareProfile], sim_time_s: float,
          chips: int) -> list[ProfileResult]:
    """Every energy model of every profile on `record` (empty when there is no record)."""
    if record is None:
        return []
    return [evaluate_profile(record, p, sim_time_s, chips) for p in profiles]


def is_procedural(weights: str) -> bool:
    return "procedural" in weights.lower()


def profile(checkpoint: Path | None, sequence_dir: Path | None, frames: int, profiles: list[Path],
            out_dir: Path, from_simulation: Path | None = None, variant: str | None = None,
            fps: float = DEFAULT_FPS, chips: int = 1) -> ProfileRun:
    """Count (float model on the first `frames` frames, or a Lava counts file), price, compare, report.

    Writes `out_dir`/report.json, report.html and (for a PyTorch run) counts.json and
    counts_template.json (the simulator's layout); returns the run
    with a Markdown summary. Bad input is a UserError naming the file.
    """
    if not fps > 0:
        raise UserError(f"--fps must be positive, got {fps}")
    if chips < 1:
        raise UserError(f"--chips must be at least 1, got {chips}")
    hw = load_profiles(list(profiles))
    counted: CountedRun | None = None
    if from_simulation is not None:
        search, template, template_path = read_simulation(Path(from_simulation),
                                                          expected_variant(checkpoint, variant))
        counts_source = (f"simulator counts {from_simulation}"
                         + (f" and {template_path}" if template_path else " (no template counts beside it)")
                         + f"; variant checked against {checkpoint or variant or 'the default model'}, the "
                           "weights are those the counts file names")
    else:
        if sequence_dir is None:
            raise UserError("--sequence is needed unless --from-simulation gives the counts")
        seq = first_frames(sequence_dir, frames)
        from spiketrack.default_model import resolve_model

        resolved = resolve_model(checkpoint, variant)
        ckpt = str(resolved.checkpoint) if resolved.checkpoint else "none (procedural weights)"
        counted = count_tracking(resolved.model, seq, variant=resolved.model.cfg.name, checkpoint=ckpt,
                                 weights=resolved.weights)
        search, template = counted.search, counted.template
        counts_source = "float model (PyTorch forward hooks on every neuron, IR node ids)"
    results = price(search, hw, search.frames / fps, chips)
    template_results = price(template, hw, 1 / fps, chips)
    transt = transt_summary(hw)
    context = run_context(search, template, counted, counts_source, sequence_dir, from_simulation, hw, fps, chips)
    out_dir = Path(out_dir)
    counts_files = []
    if counted is not None:  # the simulator's layout, so the two can be compared file by file
        counts_files = [out_dir / COUNTS_FILE, out_dir / TEMPLATE_COUNTS_FILE]
        search.to_json(counts_files[0])
        template.to_json(counts_files[1])
        context["counts_files"] = [str(p) for p in counts_files]
    json_path, html_path = write_report(out_dir, results, transt, paper_figures(), context=context,
                                        template=template_results)
    summary = markdown_summary(results, transt, paper_figures(), context=context, template=template_results)
    return ProfileRun(search, template, results, template_results, transt, context, summary, json_path,
                      html_path, counts_files)


def run_context(search: CountsRecord, template: CountsRecord | None,
                counted: CountedRun | None, counts_source: str, sequence_dir: Path | None,
                from_simulation: Path | None, profiles: list[HardwareProfile], fps: float,
                chips: int) -> dict[str, Any]:
    """The run's inputs and assumptions, as the report prints them (all JSON-able)."""
    per_frame = {k: v / search.frames for k, v in totals(search.layers).items()}
    context: dict[str, Any] = {
        "variant": search.variant,
        "checkpoint": search.checkpoint,
        "weights": search.weights,
        "procedural_weights": is_procedural(search.weights),
        "counts_source": counts_source,
        "counts_from_simulation": str(from_simulation) if from_simulation else None,
        "sequence": str(sequence_dir) if sequence_dir else None,
        "frames_tracked": len(counted.boxes) if counted else None,
        "search_frames": search.frames,
        "template_encodings": template.frames if template else 0,
        "frame_rate_fps": fps,
        "frame_rate_note": ("real-time assumption: each frame occupies 1/fps seconds of chip time; the "
                            "neuromorphic model's static power is charged for (search frames)/fps to the "
                            "search path and 1/fps (the initialisation frame) to the template encoder"),
        "sim_time_s": {"search": search.frames / fps, "template": (1 / fps) if template else 0.0},
        "chips": chips,
        "profile_paths": [p.path for p in profiles],
        "search_per_frame": per_frame,
        "search_mean_firing_rate": mean_firing_rate(search.layers),
        "template_per_encoding": ({k: v / template.frames for k, v in totals(template.layers).items()}
                                  if template else None),
        "template_mean_firing_rate": mean_firing_rate(template.layers) if template else None,
        "convention": ("energy per frame = search path per search step (template encoder cached, as "
                       "TransT's per-frame figure); template encodings priced separately per encoding"),
    }
    if counted is not None:
        context.update(per_frame=counted.per_frame, per_encoding=counted.per_encoding, boxes=counted.boxes,
                       counting_seconds=counted.seconds)
    return context
