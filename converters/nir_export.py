"""NIR export of the binary-expanded SpikeTrack graphs: what NIR can express, with marked cuts.

Source: the BN-folded float graphs of `converters.graph` (`template` and `search`), expanded to
binary spikes as in `converters.binary`. One NIR file per graph (`template.nir`, `search.nir`,
written with `nir.write`). Mapping:

* `conv` on spikes -> `Conv2d` with weight W/4 (a binary spike stands for 1/4 of the graded
  value), bias as is; the stem's `conv_dense` (real pixels, host) -> `Conv2d`; a per-template-step
  conv (MRM seg responders) only when T = 1;
* `neuron` -> `IF` (r = 1, v_threshold = 1/2): the binary IF window of `converters.binary`;
* `add` (residuals) -> an identity `Scale` (scale 1) whose incoming edges NIR sums;
* `avgpool` -> `AvgPool2d`; image input -> `Input`; the offset map -> `Output`.

NIR cannot carry (`NOT_EXPRESSIBLE`, and the nodes cut below):

* spike-driven linear attention Q·(KᵀV): `memory` (kᵀv) and `retrieve` (q·M) multiply two
  activations; NIR has only fixed-weight synapses;
* memory retrieval with template memories: the memories are state produced by the template graph
  and held between frames (search-graph `memory0..5` inputs);
* graded 0..4 spikes: exported as binary spikes over 4 sub-steps per time step, but NIR has no
  notion of that window: IF's reset is to `v_reset` (ours subtracts one unit: soft reset), its
  threshold is strict (ours half-to-even ties), the 4-spike cap per step, the membrane decay
  between time steps (multi-template variants), and "bias once per time step" are metadata only;
* positional-embedding tables (per-position constants; NIR biases are per channel);
* bilinear upsampling of the MRM output (stride 4 and 8 stages);
* the t3 channel gate (softmax over template steps), the query repeated over template steps, and
  per-step weights;
* the head's sigmoid and box decoding (host).

How the file marks them: every unsupported IR node is cut. Its inputs end in `Output` nodes named
`<node id>[in<k>]`, its result enters through an `Input` node named `<node id>[out]`; both carry
metadata `cut` (the IR op) and `ir_node`. The graph metadata lists all cuts (`cut_nodes`, JSON),
the semantics of the expansion (`semantics`), variant and weights. NIR metadata is flat: values
are strings or numbers (strings read back as bytes).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
from torch import nn

from converters.binary import SUBSTEPS
from converters.graph import build_float_graphs
from converters.ir import NetworkIR, Node
from converters.onnx_export import check_out_dir, weights_description
from spiketrack.utils.atomic import atomic_dir

FILES = {"template": "template.nir", "search": "search.nir"}
NOT_EXPRESSIBLE = {
    "memory": "k^T v product of two spike tensors (spike-driven linear attention); NIR synapses have fixed weights",
    "retrieve": "q @ M read of an attention / template memory (product of two activations)",
    "input": "template memory held as state between frames (output of the template graph)",
    "add_pos": "positional-embedding table (per-position constant); NIR biases are per channel",
    "upsample": "bilinear upsampling of the MRM output; no NIR primitive",
    "gate": "channel gate: softmax over template steps (host)",
    "repeat": "query replicated over template steps",
    "sigmoid": "head sigmoid and box decoding (host)",
    "conv": "per-template-step weights (time-varying synapses)",
}
SEMANTICS = (f"binary expansion of integer spikes 0..4: each time step is a window of {SUBSTEPS} sub-steps; a "
             "conv/IF pair integrates one window of binary input spikes (each worth 1/4 of the graded value, "
             "folded into the weights; bias once per window) and fires during the next; IF neurons: "
             "threshold 1/2, soft reset by 1 (subtract; NIR IF v_reset unused), at most 4 spikes per window, "
             "ties round half to even (threshold inclusive after an odd number of spikes in the window); "
             "membrane between time steps: (v - s/4) * decay[t-1] + x_t")


@dataclass
class NirBuilder:
    """Nodes and edges of one NIR graph; `ends[id]` is the NIR node that carries an IR node's output."""

    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    ends: dict[str, str] = field(default_factory=dict)
    cuts: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, node: nir.NIRNode, inputs: list[str]) -> str:
        self.nodes[name] = node
        self.edges.extend((self.ends[i], name) for i in inputs)
        return name


def per_step(shape: tuple[int, ...]) -> np.ndarray:
    """NIR shape of an IR edge (T, C, H, W): the per-time-step (C, H, W)."""
    return np.array(shape[1:])


def dense_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """The block-diagonal groups=1 weight of a grouped conv (nir 1.0.8's Conv2d type inference reads
    the input channels from weight.shape[1] and ignores `groups`)."""
    if groups == 1:
        return weight
    cout, cin_g = weight.shape[:2]
    cout_g = cout // groups
    dense = np.zeros((cout, cin_g * groups, *weight.shape[2:]), dtype=weight.dtype)
    for g in range(groups):
        dense[g * cout_g:(g + 1) * cout_g, g * cin_g:(g + 1) * cin_g] = weight[g * cout_g:(g + 1) * cout_g]
    return dense


def conv_node(node: Node, in_shape: tuple[int, ...]) -> nir.Conv2d:
    """Conv2d of an IR conv: spike input weights scaled by 1/4 (binary spikes), the stem as is;
    grouped convs as their dense block-diagonal equivalent (metadata `groups`)."""
    a = node.attrs
    weight, bias = node.params["weight"], node.params["bias"]
    if a["per_step"]:
        weight, bias = weight[0], bias[0]
    scale = 1.0 / SUBSTEPS if node.op == "conv" else 1.0
    weight = (dense_weight(weight, a["groups"]) * scale).astype(np.float32)
    return nir.Conv2d(input_shape=tuple(in_shape[2:]), weight=weight,
                      stride=a["stride"], padding=a["padding"], dilation=1, groups=1,
                      bias=bias.astype(np.float32),
                      metadata={"ir_node": node.id, "location": node.location, "groups": a["groups"],
                                "input": "binary spikes" if node.op == "conv" else "real values"})


def if_node(node: Node) -> nir.IF:
    """IF neurons of the binary window (soft reset and tie rule in metadata)."""
    shape = tuple(node.shape[1:])
    return nir.IF(r=np.ones(shape, np.float32), v_threshold=np.full(shape, 0.5, np.float32),
                  v_reset=np.zeros(shape, np.float32),
                  metadata={"ir_node": node.id, "reset": "subtract 1 per spike (soft), v_reset unused",
                            "max_spikes_per_step": SUBSTEPS, "substeps": SUBSTEPS,
                            "ties": "half to even", "decay": json.dumps(node.attrs.get("decay_float", []))})


def expressible(node: Node) -> bool:
    """Whether NIR can carry this IR node (see the module docstring)."""
    if node.op in ("neuron", "add", "avgpool", "conv_dense"):
        return True
    if node.op == "conv":
        return not node.attrs["per_step"] or node.shape[0] == 1
    return node.op == "input" and node.attrs["kind"] == "image"


def cut(b: NirBuilder, node: Node, shapes: dict[str, tuple[int, ...]]) -> None:
    """Boundary for an unsupported node: Output per input, Input for its result, both with metadata."""
    meta = {"cut": node.op, "ir_node": node.id, "reason": NOT_EXPRESSIBLE[node.op]}
    for k, i in enumerate(node.inputs):
        b.add(f"{node.id}[in{k}]", nir.Output(output_type={"output": per_step(shapes[i])}, metadata=meta), [i])
    b.ends[node.id] = b.add(f"{node.id}[out]", nir.Input(input_type={"input": per_step(node.shape)},
                                                           metadata=meta), [])
    b.cuts.append({"ir_node": node.id, "op": node.op, "reason": NOT_EXPRESSIBLE[node.op],
                   "inputs": list(node.inputs), "shape": list(node.shape)})


def lower(b: NirBuilder, node: Node, shapes: dict[str, tuple[int, ...]]) -> None:
    """Add the NIR node(s) of one expressible IR node."""
    if node.op == "input":
        b.ends[node.id] = b.add(node.id, nir.Input(input_type={"input": per_step(node.shape)},
                                                   metadata={"ir_node": node.id, "kind": "image"}), [])
    elif node.op in ("conv", "conv_dense"):
        b.ends[node.id] = b.add(node.id, conv_node(node, shapes[node.inputs[0]]), node.inputs)
    elif node.op == "neuron":
        b.ends[node.id] = b.add(node.id, if_node(node), node.inputs)
    elif node.op == "add":
        b.ends[node.id] = b.add(node.id, nir.Scale(scale=np.ones(per_step(node.shape), np.float32),
                                                   metadata={"ir_node": node.id, "role": "sum of inputs"}),
                                node.inputs)
    else:  # avgpool
        k = node.attrs["kernel"]
        b.ends[node.id] = b.add(node.id, nir.AvgPool2d(kernel_size=np.array([k, k]), stride=np.array([k, k]),
                                                       padding=np.array([0, 0])), node.inputs)


def nir_graph(graph: NetworkIR, meta: dict[str, str]) -> tuple[nir.NIRGraph, list[dict[str, Any]]]:
    """NIR graph of one float IR graph and the list of cut nodes."""
    b = NirBuilder()
    shapes = {n.id: n.shape for n in graph.nodes}
    for node in graph.nodes:
        if expressible(node):
            lower(b, node, shapes)
        else:
            cut(b, node, shapes)
    for name, nid in graph.outputs.items():
        if not any(c["ir_node"] == nid for c in b.cuts):
            b.add(name, nir.Output(output_type={"output": per_step(shapes[nid])}, metadata={"ir_node": nid}), [nid])
    metadata = {**meta, "graph": graph.name, "semantics": SEMANTICS, "cut_nodes": json.dumps(b.cuts),
                "not_expressible": json.dumps(NOT_EXPRESSIBLE)}
    return nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=metadata), b.cuts


@dataclass(frozen=True)
class NirExport:
    """Written files, node counts and cuts per graph."""

    folder: Path
    files: dict[str, Path]
    nodes: dict[str, int]
    cuts: dict[str, list[dict[str, Any]]]
    weights: str


def export_nir(model: nn.Module, out_dir: str | Path) -> NirExport:
    """Write `template.nir` and `search.nir` (binary-expanded, cut where NIR cannot express) into `out_dir`."""
    out = check_out_dir(Path(out_dir))
    weights = weights_description(model)
    meta = {"format": "spiketrack-nir", "variant": model.cfg.name, "weights": weights}
    graphs = dict(zip(FILES, build_float_graphs(model)))
    built = {name: nir_graph(g, meta) for name, g in graphs.items()}
    with atomic_dir(out) as tmp:
        for name, (graph, _) in built.items():
            nir.write(tmp / FILES[name], graph)
    return NirExport(out, {k: out / f for k, f in FILES.items()}, {k: len(g.nodes) for k, (g, _) in built.items()},
                     {k: c for k, (_, c) in built.items()}, weights)


def export_nir_command(model: nn.Module, out: Path) -> str:
    """CLI glue: NIR export of `model` into folder `out`; a printable summary."""
    result = export_nir(model, out)
    lines = [f"NIR ({model.cfg.name}, binary spikes x{SUBSTEPS} sub-steps) -> {result.folder}"]
    for name, path in result.files.items():
        ops = sorted({c["op"] for c in result.cuts[name]})
        lines.append(f"  {path.name}: {result.nodes[name]} nodes, {len(result.cuts[name])} cut nodes "
                     f"({', '.join(ops)}) marked as [in]/[out] boundaries")
    lines.append(f"weights: {result.weights}")
    return "\n".join(lines)
