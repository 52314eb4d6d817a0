"""Counting: a NetworkIR graph plus the values of one run of it -> per-node `LayerCounts`.

One function, `count_graph`, serves every source of values, so their counts agree exactly:

* the fixed-point reference (`converters.fixed_point.run_fixed(...).values`, every node's integers;
  `FixedPointCountingModel` counts a tracked run of it);
* a Lava simulation's node outputs (same integers);
* the FLOAT model: `CountingModel` wraps a SpikeTrack, records every neuron call of each
  `encode_templates` / `track_step` under the IR's neuron ids (`<module path>@<call index>`, the
  naming of `spiketrack.models.probes.record_spikes`, call index counted per graph run) as
  integer spike counts, and counts them on the float graph (`converters.graph.build_float_graphs`).

`count_graph` reads values only of neuron outputs (spikes) and of the spike inputs of conv,
memory and retrieve nodes (which are neuron outputs); every other figure follows from the
graph's shapes. Definitions, per node and per run (the same as `deploy.graph_eval`):

* neuron        spikes = sum of emitted spike values 0..4; neuron_updates = output elements
                (neurons per step x T); neurons = C*H*W;
* conv (spikes) synops = sum over input spikes of value x actual fan-out = (Cout/groups) x
                sum over output positions of the input values in their window (all channels):
                exact at borders and with strides;
* conv_dense    dense_macs = output elements x Cin/groups x kh x kw (the stem, on pixels);
* memory        attention_ops = sum(k) x dv (each k spike adds one dv-row of v: M = k^T v);
* retrieve      attention_ops = sum(q) x dv (each q spike adds one dv-row of M);
* host_ops      image input: its elements (quantization); add: output x (inputs - 1);
                add_pos, sigmoid: output elements; avgpool: input elements; upsample: output x 4;
                gate: T x Cv x (P^2 x P^2/2 + P^2/2 + 2 P^2); repeat: 0.

Records follow `deploy.counts` (the Lava simulator's writer) exactly, so a PyTorch record and a
Lava record of the same frames compare field by field: one record per graph, layer id = IR node
id, memory inputs (state of the search graph) are not layers; the search record's `frames` are
search steps, the template record's `frames` template encodings (`counts.json` and
`counts_template.json`). Static fields: kind (`layer_kind`), weight bytes (`param_bytes`: 8-bit
weights, 32-bit biases/tables, float64 gate in the integer IR; 4 bytes per parameter in the float
graph) and nominal fan-out (`fan_out`: (Cout/groups) ceil(kh/s) ceil(kw/s)).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from converters.fixed_point import FixedPointModel, run_fixed
from spiketrack.profiler.counts import CountsRecord, LayerCounts

SUMMED = ("spikes", "synops", "neuron_updates", "dense_macs", "attention_ops", "host_ops")
FLOAT_PARAM_BYTES = 4  # the float model's weights are float32
WEIGHT_BYTES = 1  # 8-bit mantissas
WORD_BYTES = 4  # 24-bit biases and positional tables stored in 32-bit words
GATE_PARAM_BYTES = 8  # the host gate keeps float64 parameters
COUNTS_FILE = "counts.json"  # search graph (the file names of deploy.simulate)
TEMPLATE_COUNTS_FILE = "counts_template.json"


def is_state_input(node: Any) -> bool:
    """Memory inputs of the search graph: state held by the chip, not a layer of the record."""
    return node.op == "input" and node.attrs.get("kind") == "memory"


# ------------------------------------------------------------------------------------- static part

def layer_kind(node: Any, index: Mapping[str, Any]) -> str:
    """Record kind: neuron; conv / dwconv (groups > 1) / linear (1x1 on spikes) for convs and the stem;
    attention (k^T v, and backbone q reads); memory_read (reads of a template memory held as state);
    host for everything elementwise or host-side. Descriptive only: no energy model reads it."""
    if node.op == "neuron":
        return "neuron"
    if node.op in ("conv", "conv_dense"):
        if node.attrs.get("groups", 1) > 1:
            return "dwconv"
        return "linear" if list(node.attrs["kernel"]) == [1, 1] and node.op == "conv" else "conv"
    if node.op == "memory":
        return "attention"
    if node.op == "retrieve":
        return "memory_read" if is_state_input(index[node.inputs[1]]) else "attention"
    return "host"


def param_bytes(node: Any) -> int:
    """Bytes of the parameters a node stores: conv weights + biases, positional tables, gate params.
    Integer IR: 8-bit weights, 32-bit biases/tables, float64 gate; float graph (frac_bits None): float32."""
    if node.op in ("conv", "conv_dense"):
        sizes = {"weight": node.params["weight"].size, "bias": node.params["bias"].size}
        if node.frac_bits is None:
            return FLOAT_PARAM_BYTES * (sizes["weight"] + sizes["bias"])
        return WEIGHT_BYTES * sizes["weight"] + WORD_BYTES * sizes["bias"]
    if node.op == "add_pos":
        return (FLOAT_PARAM_BYTES if node.frac_bits is None else WORD_BYTES) * node.params["table"].size
    if node.op == "gate":
        width = FLOAT_PARAM_BYTES if node.frac_bits is None else GATE_PARAM_BYTES
        return width * sum(int(np.asarray(v).size) for v in node.params.values())
    return 0


def fan_out(node: Any) -> int:
    """Nominal fan-out of one input of a conv (borders ignored): (Cout/groups) ceil(kh/s) ceil(kw/s)."""
    if node.op not in ("conv", "conv_dense"):
        return 0
    kh, kw = node.attrs["kernel"]
    stride = node.attrs["stride"]
    return node.shape[1] // node.attrs["groups"] * math.ceil(kh / stride) * math.ceil(kw / stride)


def static_ops(node: Any, in_shapes: list[tuple[int, ...]]) -> dict[str, int]:
    """Per-run figures that follow from shapes alone: dense MACs, host ops, neuron updates."""
    out = math.prod(node.shape)
    op = node.op
    if op == "conv_dense":
        kh, kw = node.attrs["kernel"]
        return {"dense_macs": out * in_shapes[0][1] // node.attrs["groups"] * kh * kw}
    if op == "neuron":
        return {"neuron_updates": out}
    if op == "input":
        return {"host_ops": out if node.attrs.get("kind") == "image" else 0}
    if op == "add":
        return {"host_ops": out * (len(node.inputs) - 1)}
    if op in ("add_pos", "sigmoid"):
        return {"host_ops": out}
    if op == "avgpool":
        return {"host_ops": math.prod(in_shapes[0])}
    if op == "upsample":
        return {"host_ops": out * 4}
    if op == "gate":
        t, cv, p, _ = in_shapes[0]
        tokens = p * p
        return {"host_ops": t * cv * (tokens * (tokens // 2) + tokens // 2 + 2 * tokens)}
    return {}


def node_layer(node: Any, index: Mapping[str, Any]) -> LayerCounts:
    """The node's record entry: static fields and the shape-determined per-run figures."""
    in_shapes = [tuple(index[i].shape) for i in node.inputs]
    return LayerCounts(
        layer_id=node.id, kind=layer_kind(node, index), location=node.location,
        input_is_spike=node.op in ("conv", "memory", "retrieve"), timesteps=int(node.shape[0]),
        neurons=math.prod(node.shape[1:]) if node.op == "neuron" else 0,
        weight_bytes=param_bytes(node), fan_out=fan_out(node), **static_ops(node, in_shapes))


# ------------------------------------------------------------------------------------ dynamic part

def spike_inputs(node: Any) -> list[str]:
    """Ids of the nodes whose values counting `node` reads (all are neuron outputs in a valid IR)."""
    if node.op == "neuron":
        return [node.id]
    if node.op in ("conv", "memory", "retrieve"):
        return [node.inputs[0]]
    return []


def window_cover(size: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """How many of a conv's output windows cover each input index 0..size-1 (one axis)."""
    outputs = (size + 2 * padding - kernel) // stride + 1
    cover = np.zeros(size + 2 * padding + 1, dtype=np.int64)
    starts = np.arange(outputs) * stride
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + kernel, -1)
    return np.cumsum(cover)[padding:padding + size]


def conv_synops(x: np.ndarray, node: Any) -> int:
    """(Cout/groups) x sum over input elements of value x number of windows covering it (exact)."""
    kh, kw = node.attrs["kernel"]
    stride, pad = node.attrs["stride"], node.attrs["padding"]
    spatial = x.sum(axis=(0, 1), dtype=np.int64)  # (H, W): over time and channels
    cover_h = window_cover(spatial.shape[0], kh, stride, pad)
    cover_w = window_cover(spatial.shape[1], kw, stride, pad)
    return node.shape[1] // node.attrs["groups"] * int(cover_h @ spatial @ cover_w)


def dynamic_ops(node: Any, x: np.ndarray | None, index: Mapping[str, Any]) -> dict[str, int]:
    """Value-dependent figures of one node given the array `spike_inputs` names (or None)."""
    if node.op == "neuron":
        return {"spikes": int(x.sum(dtype=np.int64))}
    if node.op == "conv":
        return {"synops": conv_synops(x, node)}
    if node.op in ("memory", "retrieve"):  # each input spike adds one dv-row
        dv = node.shape[3] if node.op == "memory" else index[node.inputs[1]].shape[3]
        return {"attention_ops": int(x.sum(dtype=np.int64)) * int(dv)}
    return {}


def _as_counts(value: Any, node: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A spike array as int64 of the IR shape (batch 1 and token layouts reshape losslessly)."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.size != math.prod(shape):
        raise ValueError(f"{node.id}: value has {array.size} elements, the IR shape {shape} needs "
                         f"{math.prod(shape)}")
    return array.astype(np.int64, copy=False).reshape(shape)


def count_graph(graph: Any, values: Mapping[str, Any]) -> list[LayerCounts]:
    """Counts of one run of `graph` (a NetworkIR) from its node values, one entry per node except
    memory inputs.

    `values` maps node ids to integer arrays (numpy or torch): at least every neuron node's output
    spikes 0..4 (more are ignored). Missing spike values are a ValueError listing them.
    """
    index = graph.index()
    needed = sorted({i for n in graph.nodes for i in spike_inputs(n)} - set(values))
    if needed:
        raise ValueError(f"{graph.name} graph: no values for {len(needed)} spike edge(s): "
                         f"{', '.join(needed[:5])}{' ...' if len(needed) > 5 else ''}")
    layers = []
    for node in graph.nodes:
        if is_state_input(node):
            continue
        reads = spike_inputs(node)
        x = _as_counts(values[reads[0]], index[reads[0]], tuple(index[reads[0]].shape)) if reads else None
        layers.append(replace(node_layer(node, index), **dynamic_ops(node, x, index)))
    return layers


def add_layers(a: list[LayerCounts], b: list[LayerCounts]) -> list[LayerCounts]:
    """Sum the per-run figures of two count lists of the same graph (static fields must agree)."""
    if [l.layer_id for l in a] != [l.layer_id for l in b]:
        raise ValueError("count lists describe different layers")
    return [replace(x, **{f: getattr(x, f) + getattr(y, f) for f in SUMMED}) for x, y in zip(a, b)]


def totals(layers: list[LayerCounts]) -> dict[str, int]:
    """Sum of each per-run figure over all layers."""
    return {f: sum(getattr(l, f) for l in layers) for f in SUMMED}


def mean_firing_rate(layers: list[LayerCounts]) -> float | None:
    """Spikes per neuron update over all neuron layers (mean spike count per neuron per step, 0..4)."""
    updates = sum(l.neuron_updates for l in layers if l.neurons)
    return sum(l.spikes for l in layers if l.neurons) / updates if updates else None


# ------------------------------------------------------------------------------- records

def make_record(layers: list[LayerCounts], runs: int, *, variant: str, checkpoint: str, source: str,
                weights: str) -> CountsRecord:
    """A record of one graph: `layers` summed over `runs` runs (search steps or template encodings)."""
    return CountsRecord(variant, checkpoint, runs, source, weights, list(layers))


# ----------------------------------------------------------------------------- float model

@contextlib.contextmanager
def record_neuron_counts(model: nn.Module, names: set[str] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Integer spike counts (int8) of every neuron call while open, keyed `<path>@<call index>`.

    Call indices start at 0 when the context opens (one graph run per context). Calls whose id is
    not in `names` (e.g. the channel gate's inner neuron, part of a host node) are not kept.
    """
    from spiketrack.models.neuron import MultiSpikeNeuron

    records: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}

    def hook(name: str):
        def fn(module: MultiSpikeNeuron, _inputs, out: torch.Tensor) -> None:
            k = calls.get(name, 0)
            calls[name] = k + 1
            key = f"{name}@{k}"
            if names is None or key in names:
                records[key] = torch.round(out.detach() * module.max_value).to(torch.int8)
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, MultiSpikeNeuron)]
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


@dataclass
class GraphTally:
    """Running counts of one graph: summed layers, runs, and per-run totals."""

    layers: list[LayerCounts] | None = None
    runs: int = 0
    per_run: list[dict[str, int]] = field(default_factory=list)

    def add(self, layers: list[LayerCounts]) -> None:
        self.layers = layers if self.layers is None else add_layers(self.layers, layers)
        self.runs += 1
        self.per_run.append({**totals(layers), "neurons_x_steps": sum(l.neuron_updates for l in layers)})


class CountingModel(nn.Module):
    """A SpikeTrack with the tracker API that counts every template encoding and search step.

    `graphs`: the float (or integer) IR graphs of the same variant, by name ('template', 'search');
    their neuron ids name the recorded calls. Hand it to `SpikeTrackTracker` instead of the model.
    """

    def __init__(self, model: nn.Module, graphs: Mapping[str, Any]):
        super().__init__()
        self.model = model
        self.cfg = model.cfg
        self.graphs = dict(graphs)
        self.neuron_ids = {g: {n.id for n in graph.nodes if n.op == "neuron"} for g, graph in self.graphs.items()}
        self.tallies = {g: GraphTally() for g in self.graphs}

    def _run(self, graph: str, fn, *args: torch.Tensor):
        with record_neuron_counts(self.model, self.neuron_ids[graph]) as values:
            out = fn(*args)
        missing = self.neuron_ids[graph] - set(values)
        if missing:
            raise ValueError(f"{graph} graph: the model never called {len(missing)} IR neuron(s), e.g. "
                             f"{sorted(missing)[0]} (graph and model disagree)")
        self.tallies[graph].add(count_graph(self.graphs[graph], values))
        return out

    def encode_templates(self, templates: torch.Tensor) -> list[torch.Tensor]:
        return self._run("template", self.model.encode_templates, templates)

    def track_step(self, search: torch.Tensor, memories: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._run("search", self.model.track_step, search, memories)

    def record(self, graph: str, **meta: str) -> CountsRecord:
        """What was counted on `graph` ('search' / 'template'), see `tally_record`."""
        return tally_record(self.tallies[graph], graph, **meta)


class FixedPointCountingModel(FixedPointModel):
    """The fixed-point reference with the tracker API (`FixedPointModel`), counting every run of its
    integer graphs with `count_graph` on all node values."""

    def __init__(self, bundle: Any, cfg: Any):
        super().__init__(bundle, cfg)
        self.tallies = {"template": GraphTally(), "search": GraphTally()}

    def encode_templates(self, templates: torch.Tensor) -> list[torch.Tensor]:
        graph = self.bundle.template
        res = run_fixed(graph, {graph.inputs[0]: templates[:, 0]})
        self.tallies["template"].add(count_graph(graph, res.values))
        return [res.values[nid] for nid in graph.outputs.values()]

    def track_step(self, search: torch.Tensor, memories: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().track_step(search, memories)
        self.tallies["search"].add(count_graph(self.bundle.search, self.last_search.values))
        return out

    def record(self, graph: str, **meta: str) -> CountsRecord:
        """What was counted on `graph` ('search' / 'template'), see `tally_record`."""
        return tally_record(self.tallies[graph], graph, **meta)


def tally_record(tally: GraphTally, graph: str, *, variant: str, checkpoint: str, weights: str,
                 source: str = "pytorch") -> CountsRecord:
    """The record of one graph's tally ('search': frames = search steps; 'template': frames =
    encodings); ValueError if that graph never ran."""
    if not tally.runs:
        raise ValueError(f"the {graph} graph never ran")
    return make_record(tally.layers, tally.runs, variant=variant, checkpoint=checkpoint, source=source,
                       weights=weights)
