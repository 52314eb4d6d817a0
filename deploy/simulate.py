"""`simulate`: track a sequence with a deployed bundle, the search step simulated in Lava.

The host side is the tracker of `spiketrack.tracker` unchanged (crop, normalisation, Hann window,
box decoding and map-back, template updates): it drives a `BackendModel` whose template encoder
and search step run on a `deploy.backend.Runner`. With the same integer maps the boxes are
therefore identical to those of the fixed-point reference (`converters.fixed_point`).
Writes `<sequence>.txt` (`x,y,w,h` per frame), `counts.json` (search graph, per frame totals,
the profiler's `CountsRecord` with source 'lava') and `counts_template.json` (template encodings).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from deploy.backend import Runner, get_backend, memory_names
from deploy.counts import counts_record, saturated_counts
from deploy.graph_eval import SUPPORTED_OPS
from spiketrack.data.datasets import load_sequence
from spiketrack.data.sequence import Sequence
from spiketrack.errors import UserError
from spiketrack.models.config import ModelConfig, get_config
from spiketrack.profiler.counts import CountsRecord
from spiketrack.tracker.runner import run_tracker_on_sequence
from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker, TrackerParams
from spiketrack.utils.atomic import write_text_atomic

HEAD_OUTPUTS = {"score_map": 1, "size_map": 2, "offset_map": 2}
Observer = Callable[[str, dict[str, np.ndarray], Runner], None]  # (graph, inputs given, runner) after each run


@dataclass
class SimResult:
    """Boxes, timing, written files and the counts of one simulated sequence."""

    sequence: str
    boxes: np.ndarray  # (N, 4) x, y, w, h
    frames: int
    seconds_per_frame: float  # search steps only (no template encoding, image decoding or start-up)
    startup_seconds: float
    boxes_path: Path
    counts_path: Path
    template_counts_path: Path
    counts: CountsRecord
    template_counts: CountsRecord
    saturated: dict[str, int] = field(default_factory=dict)


class BackendModel(nn.Module):
    """Tracker-compatible model (`encode_templates`, `track_step`) running on a backend Runner.

    Memories are returned to the tracker as an opaque list and installed as the runner's state when
    the tracker hands back a list other than the one installed last."""

    def __init__(self, runner: Runner, bundle: Any, cfg: ModelConfig, observer: Observer | None = None):
        super().__init__()
        self.runner, self.bundle, self.cfg, self.observer = runner, bundle, cfg, observer
        self.register_parameter("_dtype_anchor", nn.Parameter(torch.zeros(()), requires_grad=False))
        self._names = memory_names(bundle)
        self._installed: list[np.ndarray] | None = None
        self._out_bits = {name: bundle.search.node(nid).frac_bits for name, nid in bundle.search.outputs.items()}
        self.search_seconds = 0.0
        self.search_frames = 0
        self.template_runs = 0

    def encode_templates(self, templates: torch.Tensor) -> list[np.ndarray]:
        """Templates (T, 1, 3, S, S) -> memories (installed in the search graph)."""
        images = templates[:, 0].detach().cpu().numpy()
        memories = self.runner.encode_templates(images)
        self.template_runs += 1
        if self.observer is not None:
            self.observer("template", {self.bundle.template.inputs[0]: images}, self.runner)
        self._installed = [memories[k] for k in self._names]
        return self._installed

    def track_step(self, search: torch.Tensor, memories: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Search crop (1, 1, 3, S, S) -> dequantized head maps (1, C, F, F) float32, as FixedPointModel."""
        if memories is not self._installed:
            self.runner.set_memories(dict(zip(self._names, memories, strict=True)))
            self._installed = memories
        image = search[:, 0].detach().cpu().numpy()
        start, startup = time.perf_counter(), self.runner.startup_seconds
        out = self.runner.run_frame(image)
        self.search_seconds += time.perf_counter() - start - (self.runner.startup_seconds - startup)
        self.search_frames += 1
        if self.observer is not None:
            self.observer("search", {"search": image, **dict(zip(self._names, memories))}, self.runner)
        return {name: torch.from_numpy(out[name].astype(np.float64) * 2.0 ** -self._out_bits[name]).to(torch.float32)
                for name in HEAD_OUTPUTS}


def load_deploy_bundle(path: str | Path) -> Any:
    """The IR bundle of an export bundle, loaded and checked by the converter's loader (UserError)."""
    from converters.export_lava import load_export  # bundle = IR + netx HDF5 + manifest

    path = Path(path)
    if not path.is_dir():
        raise UserError("no such bundle folder", path)
    bundle, _netx_files = load_export(path)
    return bundle


def bundle_config(bundle: Any, path: str | Path) -> ModelConfig:
    """The model config of a bundle (its meta, else the registry entry of its variant)."""
    data = dict(bundle.meta.get("model_config") or {})
    if not data:
        return get_config(bundle.variant)
    try:
        data["embed_dims"] = tuple(data["embed_dims"])
        return ModelConfig(**data)
    except (KeyError, TypeError) as exc:
        raise UserError(f"bundle meta model_config is malformed ({exc})", path) from None


def check_bundle(bundle: Any, cfg: ModelConfig, path: str | Path) -> None:
    """UserError unless the bundle's graphs are the tracker's template/search graphs for `cfg`."""
    s, f = cfg.search_size, cfg.feat_size
    t_graph, s_graph = bundle.template, bundle.search
    want = {("template", t_graph.inputs[0] if t_graph.inputs else None): (cfg.num_templates, 3, s, s),
            ("search", "search"): (1, 3, s, s)}
    for (gname, nid), shape in want.items():
        graph = bundle.graphs()[gname]
        if nid is None or nid not in graph.inputs or tuple(graph.node(nid).shape) != shape:
            raise UserError(f"{gname} graph must take an image input of shape {shape} "
                            f"(variant {cfg.name}, search size {s}, {cfg.num_templates} templates)", path)
    for name, channels in HEAD_OUTPUTS.items():
        nid = s_graph.outputs.get(name)
        if nid is None or tuple(s_graph.node(nid).shape) != (1, channels, f, f):
            raise UserError(f"search graph must output {name} of shape (1, {channels}, {f}, {f})", path)
    for name in set(s_graph.inputs) - {"search"}:
        if name not in t_graph.outputs:
            raise UserError(f"search graph input {name} is not an output of the template graph", path)
        if tuple(t_graph.node(t_graph.outputs[name]).shape) != tuple(s_graph.node(name).shape):
            raise UserError(f"memory {name}: template output and search input shapes differ", path)
    for graph in (t_graph, s_graph):
        unknown = sorted({n.op for n in graph.nodes} - SUPPORTED_OPS)
        if unknown:
            raise UserError(f"{graph.name} graph uses ops this simulator does not implement: {unknown}", path)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header (no full decode)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read image header ({exc})", path) from None


def check_frame_sizes(seq: Sequence) -> tuple[int, int]:
    """The common (width, height) of all frames; UserError naming the first frame that differs."""
    first = image_size(seq.frames[0])
    for frame in seq.frames[1:]:
        size = image_size(frame)
        if size != first:
            raise UserError(f"frame size {size[0]}x{size[1]} differs from the first frame's "
                            f"{first[0]}x{first[1]} (a sequence must keep one frame size)", frame)
    return first


def truncate(seq: Sequence, frames: int | None) -> Sequence:
    """The first `frames` frames of `seq` (all when None); UserError for frames < 1."""
    if frames is None:
        return seq
    if frames < 1:
        raise UserError(f"--frames must be >= 1, got {frames}")
    n = min(frames, len(seq))
    return dataclasses.replace(seq, frames=seq.frames[:n], ground_truth=seq.ground_truth[:n], absent=seq.absent[:n])


def simulate(bundle_dir: str | Path, sequence_dir: str | Path, frames: int | None = None,
             out_dir: str | Path = "out/simulate", backend: str = "lava", progress: bool = True,
             trace: bool = False, observer: Observer | None = None) -> SimResult:
    """Track `sequence_dir` with the bundle in `bundle_dir`, search steps on `backend`; write results.

    Debugging: with `trace`, `observer(graph, inputs, runner)` may read `runner.node_outputs(graph)`
    after every template encoding and search frame."""
    bundle = load_deploy_bundle(bundle_dir)
    cfg = bundle_config(bundle, bundle_dir)
    check_bundle(bundle, cfg, bundle_dir)
    seq = truncate(load_sequence(sequence_dir), frames)
    check_frame_sizes(seq)
    out_dir = Path(out_dir)
    runner = get_backend(backend).build(bundle, trace=trace)
    try:
        model = BackendModel(runner, bundle, cfg, observer)
        params = TrackerParams.from_model_cfg(cfg).for_dataset(seq.name)
        boxes, _fps = run_tracker_on_sequence(SpikeTrackTracker(model, params), seq, progress=progress)
        stats = runner.counts()
    finally:
        runner.close()
    search_frames = max(model.search_frames, 1)
    template_runs = max(1, model.template_runs)
    record = counts_record(bundle.search, stats["search"], search_frames, bundle.meta)
    template_record = counts_record(bundle.template, stats["template"], template_runs, bundle.meta)
    boxes_path = out_dir / f"{seq.name}.txt"
    _write_boxes(boxes_path, boxes)
    record.to_json(out_dir / "counts.json")
    template_record.to_json(out_dir / "counts_template.json")
    saturated = {**{f"template/{k}": v for k, v in saturated_counts(stats["template"]).items()},
                 **saturated_counts(stats["search"])}
    spf = model.search_seconds / model.search_frames if model.search_frames else math.nan
    result = SimResult(seq.name, boxes, len(seq), spf, runner.startup_seconds, boxes_path, out_dir / "counts.json",
                       out_dir / "counts_template.json", record, template_record, saturated)
    write_text_atomic(out_dir / "simulate.json", json.dumps(_summary(result, backend, bundle_dir), indent=1) + "\n")
    return result


def _write_boxes(path: Path, boxes: np.ndarray) -> None:
    """`x,y,w,h` lines (two decimals, as `spiketrack track`), atomically."""
    from spiketrack.evaluation.ope import write_results

    write_results(path, boxes)


def _summary(result: SimResult, backend: str, bundle_dir: str | Path) -> dict[str, Any]:
    return {"sequence": result.sequence, "frames": result.frames, "backend": backend, "bundle": str(bundle_dir),
            "seconds_per_search_frame": result.seconds_per_frame, "startup_seconds": result.startup_seconds,
            "boxes": str(result.boxes_path),
            "counts": str(result.counts_path), "template_counts": str(result.template_counts_path),
            "saturated": result.saturated}
