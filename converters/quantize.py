"""Post-training quantization of a SpikeTrack model into the integer IR (docs/FIXED_POINT.md).

Steps: fold every BN (`converters.graph`, via `spiketrack.models.fuse`); run the float graphs on
calibration crops and take max |value| per edge; pick each edge's fractional bits F from it with
headroom; quantize weights to 8-bit mantissas with one power-of-two exponent per layer (clipping
and underflow reported per layer); biases and positional tables to the output F; decays to 12
bits; the attention scale to a 16-bit multiplier and a shift. Calibration crops come from images
shipped with scikit-image / scikit-learn, never from evaluation sequences.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from converters.graph import build_float_graphs, run_float
from converters.ir import (ACC_BITS, DECAY_BITS, MEMORY_FRAC_BITS, SPIKE_FRAC_BITS, IRBundle, NetworkIR,
                           Node)
from spiketrack.data.package_images import SKLEARN_SAMPLES, package_images
from spiketrack.errors import UserError
from spiketrack.tracker.preprocessing import normalize_crop, sample_target

ACC_MAX = 2 ** (ACC_BITS - 1) - 1
ACC_MIN = -(2 ** (ACC_BITS - 1))
MULTIPLIER_BITS = 16
CALIBRATION_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                      "hubble_deep_field", "colorwheel", SKLEARN_SAMPLES)
# (centre x, centre y, side) as fractions of the image: where calibration "targets" sit
CALIBRATION_BOXES = ((0.5, 0.45, 0.3), (0.3, 0.35, 0.2), (0.68, 0.62, 0.16))
SEARCH_JITTER = (0.15, -0.1, 1.1)  # search crop: box shifted by (dx, dy) * side and scaled


@dataclass(frozen=True)
class QuantConfig:
    """Quantizer settings. `headroom`: calibrated max is multiplied by it before choosing F."""

    weight_bits: int = 8
    headroom: float = 4.0
    min_frac_bits: int = 2
    max_frac_bits: int = 20
    weight_policy: str = "mse"  # 'mse': best of the top exponents (may clip outliers); 'max': never clip
    mse_candidates: int = 3


@dataclass(frozen=True)
class CalibrationFrame:
    """An RGB uint8 image and a target box (x, y, w, h) in it."""

    name: str
    image: np.ndarray
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class WeightQuant:
    """8-bit mantissas, the exponent, and what the rounding / clipping cost."""

    mantissa: np.ndarray
    exponent: int
    clipped: int
    max_clip_error: float
    zeroed: int
    rel_rms_error: float


@dataclass
class LayerReport:
    """Per weighted layer: exponent, clipping, underflow, relative error, saturated biases."""

    graph: str
    id: str
    op: str
    weights: int
    weight_exp: int
    clipped: int
    max_clip_error: float
    zeroed: int
    rel_rms_error: float
    bias_saturated: int
    frac_bits: int


@dataclass
class QuantReport:
    """Everything the quantizer decided: per-layer weight quantization and per-edge F and max."""

    layers: list[LayerReport] = field(default_factory=list)
    edges: dict[str, dict[str, float]] = field(default_factory=dict)  # node id -> {max, frac_bits}
    calibration: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def clipped_layers(self) -> list[LayerReport]:
        """Layers where any weight or bias did not fit."""
        return [r for r in self.layers if r.clipped or r.bias_saturated]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (stored in the bundle's meta)."""
        return {"layers": [asdict(r) for r in self.layers], "edges": self.edges,
                "calibration": self.calibration, "config": self.config}

    def format(self, only_clipped: bool = False) -> str:
        """Table of the layers (optionally only those that clipped)."""
        rows = [f"{'graph':<8} {'layer':<56} {'e_w':>4} {'F':>3} {'weights':>8} {'clip':>5} {'maxclip':>9} "
                f"{'zeroed':>7} {'relrms':>7} {'bsat':>4}"]
        for r in self.layers:
            if only_clipped and not (r.clipped or r.bias_saturated):
                continue
            rows.append(f"{r.graph:<8} {r.id:<56} {r.weight_exp:>4} {r.frac_bits:>3} {r.weights:>8} {r.clipped:>5} "
                        f"{r.max_clip_error:>9.3g} {r.zeroed:>7} {r.rel_rms_error:>7.4f} {r.bias_saturated:>4}")
        return "\n".join(rows)


@dataclass
class QuantResult:
    """The integer IR bundle and the report of how it was made."""

    bundle: IRBundle
    report: QuantReport


# ----------------------------------------------------------------------------------------------
# calibration data

def default_calibration_frames(limit: int | None = None) -> list[CalibrationFrame]:
    """Deterministic (image, box) pairs: fixed boxes on the packaged images, round-robin over images."""
    images = package_images(CALIBRATION_IMAGES)
    frames = []
    for cx, cy, side in CALIBRATION_BOXES:
        for name, image in images.items():
            h, w = image.shape[:2]
            s = side * min(h, w)
            frames.append(CalibrationFrame(name, image, (cx * w - s / 2, cy * h - s / 2, s, s)))
    return frames[:limit]


def crop(frame: CalibrationFrame, size: int, jitter: tuple[float, float, float] = (0, 0, 1)) -> torch.Tensor:
    """Normalised tracker crop (3, S, S) of the frame's box (optionally shifted/scaled), factor 4."""
    x, y, w, h = frame.box
    dx, dy, scale = jitter
    box = (x + dx * w + w * (1 - scale) / 2, y + dy * h + h * (1 - scale) / 2, w * scale, h * scale)
    patch, _ = sample_target(frame.image, box, 4.0, size)
    return normalize_crop(patch)


def calibration_inputs(frame: CalibrationFrame, size: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Templates (T, 3, S, S) — step 0 the box, later steps the jittered box — and the search crop (1, 3, S, S)."""
    template, shifted = crop(frame, size), crop(frame, size, SEARCH_JITTER)
    templates = torch.stack([template] + [shifted] * (steps - 1))
    return templates, shifted[None]


@torch.no_grad()
def calibrate(template: NetworkIR, search: NetworkIR, frames: Sequence[CalibrationFrame], size: int,
              steps: int) -> dict[str, float]:
    """max |value| of every node of both graphs over the calibration frames (float32 is plenty for maxima)."""
    if not frames:
        raise UserError("quantization needs at least one calibration frame")
    maxima: dict[str, float] = {}

    def record(values: dict[str, torch.Tensor], graph: str) -> None:
        for k, v in values.items():
            key = f"{graph}/{k}"
            maxima[key] = max(maxima.get(key, 0.0), float(v.abs().max()))

    for frame in frames:
        templates, search_crop = calibration_inputs(frame, size, steps)
        tv = run_float(template, {"templates": templates}, torch.float32)
        record(tv, "template")
        inputs = {"search": search_crop, **{name: tv[nid] for name, nid in template.outputs.items()}}
        record(run_float(search, inputs, torch.float32), "search")
    return maxima


# ----------------------------------------------------------------------------------------------
# number formats

def round_half_up(x: np.ndarray) -> np.ndarray:
    """floor(x + 0.5) as int64 (the contract's rounding)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def frac_bits_for(max_abs: float, cfg: QuantConfig) -> int:
    """Largest F with max_abs * headroom * 2**F inside the 24-bit range, clamped to the config bounds."""
    if max_abs <= 0 or not math.isfinite(max_abs):
        return cfg.max_frac_bits
    f = math.floor(math.log2(ACC_MAX / (max_abs * cfg.headroom)))
    return int(min(max(f, cfg.min_frac_bits), cfg.max_frac_bits))


def quantize_with_exponent(w: np.ndarray, exponent: int, bits: int) -> WeightQuant:
    """Mantissas round(w / 2**e) clipped to the signed `bits` range, with the error statistics."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    raw = round_half_up(w / 2.0 ** exponent)
    mant = np.clip(raw, lo, hi)
    clipped = raw != mant
    err = w - mant * 2.0 ** exponent
    max_clip = float(np.abs(err[clipped]).max()) if clipped.any() else 0.0
    norm = float(np.sqrt(np.mean(w ** 2))) if w.size else 0.0
    rel = float(np.sqrt(np.mean(err ** 2)) / norm) if norm > 0 else 0.0
    zeroed = int(((mant == 0) & (w != 0)).sum())
    return WeightQuant(mant, exponent, int(clipped.sum()), max_clip, zeroed, rel)


def quantize_weights(w: np.ndarray, cfg: QuantConfig) -> WeightQuant:
    """One power-of-two exponent per layer: the smallest that fits max |w| ('max'), or the best of it
    and the next `mse_candidates - 1` smaller ones by squared error ('mse'; clips outliers if that wins)."""
    w = np.asarray(w, dtype=np.float64)
    top = 2 ** (cfg.weight_bits - 1) - 1
    peak = float(np.abs(w).max()) if w.size else 0.0
    if peak == 0.0:
        return quantize_with_exponent(w, 0, cfg.weight_bits)
    e_max = math.ceil(math.log2(peak / top))
    if cfg.weight_policy == "max":
        return quantize_with_exponent(w, e_max, cfg.weight_bits)
    if cfg.weight_policy != "mse":
        raise ValueError(f"unknown weight policy {cfg.weight_policy!r}")
    options = [quantize_with_exponent(w, e_max - k, cfg.weight_bits) for k in range(cfg.mse_candidates)]
    return min(options, key=lambda q: q.rel_rms_error)


def saturate(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Clamp to the 24-bit range; also the number of clamped elements."""
    clamped = np.clip(values, ACC_MIN, ACC_MAX)
    return clamped, int((clamped != values).sum())


def to_fixed(values: np.ndarray, frac_bits: int) -> tuple[np.ndarray, int]:
    """round(v * 2**F), saturated; and the number saturated."""
    return saturate(round_half_up(np.asarray(values, dtype=np.float64) * 2.0 ** frac_bits))


def multiplier_shift(scale: float) -> tuple[int, int]:
    """(m, n) with m < 2**16 as large as possible and m * 2**-n ≈ scale (> 0)."""
    n = math.floor(math.log2((2 ** MULTIPLIER_BITS - 1) / scale))
    m = round(scale * 2.0 ** n)
    if m > 2 ** MULTIPLIER_BITS - 1:
        n -= 1
        m = round(scale * 2.0 ** n)
    return int(m), int(n)


# ----------------------------------------------------------------------------------------------
# graph quantization

def output_frac_bits(node: Node, in_bits: list[int], max_abs: float, cfg: QuantConfig) -> int:
    """F of a node's output edge: fixed by the op (spikes, memories, pass-through) or calibrated."""
    if node.op == "neuron":
        return SPIKE_FRAC_BITS
    if node.op == "memory" or node.attrs.get("kind") == "memory":
        return MEMORY_FRAC_BITS
    if node.op in ("avgpool", "upsample", "repeat"):
        return in_bits[0]
    return frac_bits_for(max_abs, cfg)


def quantize_node(node: Node, in_bits: list[int], f_out: int, cfg: QuantConfig,
                  report: QuantReport, in_shapes: list[tuple[int, ...]], graph: str) -> Node:
    """Integer version of one float-graph node (attrs/params as in `converters.ir`)."""
    a = {k: v for k, v in node.attrs.items() if k != "decay_float"}
    params: dict[str, np.ndarray] = {}
    if node.op in ("conv", "conv_dense"):
        wq = quantize_weights(node.params["weight"], cfg)
        bias, bsat = to_fixed(node.params["bias"], f_out)
        params = {"weight": wq.mantissa, "bias": bias}
        a.update(weight_exp=wq.exponent, shift=in_bits[0] - wq.exponent - f_out)
        report.layers.append(LayerReport(graph, node.id, node.op, int(wq.mantissa.size), wq.exponent, wq.clipped,
                                         wq.max_clip_error, wq.zeroed, wq.rel_rms_error, bsat, f_out))
    elif node.op == "neuron":
        a.update(f_in=in_bits[0], decay=[int(round_half_up(d * 2 ** DECAY_BITS)) for d in node.attrs["decay_float"]])
    elif node.op == "add":
        a["shifts"] = [f - f_out for f in in_bits]
    elif node.op == "add_pos":
        table, tsat = to_fixed(node.params["table"], f_out)
        params = {"table": table}
        a["shift"] = in_bits[0] - f_out
        if tsat:
            report.layers.append(LayerReport(graph, node.id, node.op, int(table.size), 0, 0, 0.0, 0, 0.0, tsat, f_out))
    elif node.op == "avgpool":
        a["shift"] = int(math.log2(a["kernel"] ** 2)) + in_bits[0] - f_out
    elif node.op == "upsample":
        params = dict(node.params)
        a["shift"] = 2 * int(math.log2(2 * a["factor"])) + in_bits[0] - f_out
    elif node.op == "retrieve":
        d = in_shapes[1][2]
        m, n = multiplier_shift(2.0 / math.sqrt(d) * 2.0 ** (f_out - in_bits[0] - in_bits[1]))
        a.update(multiplier=m, shift=n)
    elif node.op == "gate":
        params = dict(node.params)
    return Node(node.id, node.op, list(node.inputs), node.shape, f_out, a, params, node.location, node.source)


def quantize_graph(graph: NetworkIR, maxima: dict[str, float], cfg: QuantConfig, report: QuantReport,
                   fixed_inputs: dict[str, int] | None = None) -> NetworkIR:
    """Integer IR of a float graph given calibrated maxima (`<graph>/<node id>` keys)."""
    bits: dict[str, int] = dict(fixed_inputs or {})
    shapes = {n.id: n.shape for n in graph.nodes}
    nodes = []
    for node in graph.nodes:
        in_bits = [bits[i] for i in node.inputs]
        max_abs = maxima.get(f"{graph.name}/{node.id}", 0.0)
        f_out = bits.get(node.id, output_frac_bits(node, in_bits, max_abs, cfg))
        nodes.append(quantize_node(node, in_bits, f_out, cfg, report, [shapes[i] for i in node.inputs],
                                   graph.name))
        bits[node.id] = f_out
        report.edges[f"{graph.name}/{node.id}"] = {"max": max_abs, "frac_bits": f_out}
    out = NetworkIR(graph.name, graph.variant, nodes, list(graph.inputs), dict(graph.outputs))
    out.validate()
    return out


def quantize_model(model: nn.Module, calibration_frames: Sequence[CalibrationFrame] | None = None,
                   config: QuantConfig = QuantConfig()) -> QuantResult:
    """Fold, calibrate and quantize a SpikeTrack model into the integer IR bundle (both graphs)."""
    frames = default_calibration_frames() if calibration_frames is None else list(calibration_frames)
    template, search = build_float_graphs(model)
    cfg_model = model.cfg
    maxima = calibrate(template, search, frames, cfg_model.search_size, cfg_model.num_templates)
    report = QuantReport(calibration=[f"{f.name} {tuple(round(v, 1) for v in f.box)}" for f in frames],
                         config=asdict(config))
    qt = quantize_graph(template, maxima, config, report)
    qs = quantize_graph(search, maxima, config, report)
    meta = {"model_config": asdict(cfg_model), "quant_report": report.to_json()}
    return QuantResult(IRBundle(cfg_model.name, qt, qs, meta), report)
