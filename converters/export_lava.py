"""Lava export: the integer IR bundle plus lava-dl netx HDF5 files for the conv chains netx can express.

A bundle folder holds `manifest.json` and `arrays.npz` (the IR, `converters.ir`) and
`netx/<graph>_<k>.h5`: each a netx network (`layer/<i>/...`, LAVA.md §6) of one maximal chain
conv → neuron → conv → neuron … of the graph (no residuals, pooling or attention inside).
netx's own neuron models (CUBA/SDNN) are not SpikeTrack's multi-spike neuron: the files carry
the topology and the exact integer weights (loadable by `lava.lib.dl.netx.hdf5.Network`), a
CUBA neuron as the nearest netx type, and the exact fixed-point parameters in
`layer/<i>/spiketrack/` (ignored by netx). The manifest's `lava` section says which nodes are in
which file and which are custom (neuromorphic, custom process) or host. This module only uses
h5py; nothing here imports Lava.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
from torch import nn

from converters.ir import (IRBundle, NetworkIR, Node, file_record, load_bundle, read_manifest,
                           save_bundle)
from converters.quantize import CalibrationFrame, QuantConfig, QuantReport, QuantResult, quantize_model
from spiketrack.errors import UserError
from spiketrack.utils.atomic import atomic_dir

NETX_DIR = "netx"
NEURONS_PER_CORE = 8192  # Loihi 2: 1M neurons / 128 neuro-cores (Intel Loihi 2 brief [1])
SYNAPTIC_MEMORY_PER_CORE: int | None = None  # Loihi 2 per-core synaptic memory: not documented in [1]/[2]
LAVA_NOTE = ("netx files hold the exact integer weights and topology of conv->neuron chains; their CUBA "
             "neuron is only the nearest netx type (binary/graded LIF, hard reset), not the multi-spike "
             "soft-reset neuron: use layer/<i>/spiketrack/ or the IR for bit-exact semantics")
MAPPING_SOURCES = (
    "[1] Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2' (technology brief, "
    "2021; copy at https://www.scribd.com/document/714638451): 128 neuro-cores, up to 1M neurons and 120M "
    "synapses per chip (8,192 neurons per core), fully programmable neuron models (microcode), graded "
    "spikes with integer payloads; summary at https://open-neuromorphic.org/neuromorphic-computing/"
    "hardware/loihi-2-intel/ (6 embedded x86 cores for I/O and management; custom neuron models in "
    "microcode).",
    "[2] Synaptic memory per Loihi 2 core: not stated in the sources consulted -> 'unknown'. For scale: "
    "Loihi 1 had 16 MB of synaptic memory over 128 cores (128 KB/core; IEEE Circuits and Systems "
    "Magazine Q2 2022 p. 21; Davies et al., IEEE Micro 2018). 120M synapses / 128 cores is about 0.94M "
    "synapses per core on average (derived, not a documented per-core limit).",
)


@dataclass
class NetxLayer:
    """One netx layer: a conv node and the neuron node that consumes it."""

    conv: str
    neuron: str
    shape_chw: list[int]
    weight_shape: list[int]


@dataclass
class NetxFile:
    """One netx HDF5 file: which graph, its input (a spike edge) and its layers."""

    file: str
    graph: str
    input: str
    input_shape_whc: list[int]
    layers: list[NetxLayer]


@dataclass
class MappingRow:
    """Loihi 2 mapping of one IR node."""

    graph: str
    node: str
    op: str
    placement: str  # 'neurocore' | 'custom microcode' | 'host'
    neurons: int  # output elements per time step
    fan_in: int
    synapses: int
    weight_bytes: int
    cores: int
    note: str


@dataclass
class MappingTable:
    """Per-node Loihi 2 mapping with totals and the sources of the limits."""

    rows: list[MappingRow]
    sources: tuple[str, ...] = MAPPING_SOURCES

    def totals(self) -> dict[str, dict[str, int]]:
        """Per placement: nodes, neurons, synapses, weight bytes, cores."""
        out: dict[str, dict[str, int]] = {}
        for r in self.rows:
            t = out.setdefault(r.placement, {"nodes": 0, "neurons": 0, "synapses": 0, "weight_bytes": 0,
                                             "cores": 0})
            for key, value in (("nodes", 1), ("neurons", r.neurons), ("synapses", r.synapses),
                               ("weight_bytes", r.weight_bytes), ("cores", r.cores)):
                t[key] += value
        return out

    def format(self, detail: bool = True) -> str:
        """The table (or only totals), with the limits used and their sources in the footer."""
        lines = []
        if detail:
            lines.append(f"{'graph':<8} {'node':<52} {'op':<10} {'placement':<16} {'neurons':>8} {'fan-in':>6} "
                         f"{'synapses':>10} {'w bytes':>8} {'cores':>5}  note")
            for r in self.rows:
                lines.append(f"{r.graph:<8} {r.node:<52} {r.op:<10} {r.placement:<16} {r.neurons:>8} {r.fan_in:>6} "
                             f"{r.synapses:>10} {r.weight_bytes:>8} {r.cores:>5}  {r.note}")
        lines.append(f"{'placement':<16} {'nodes':>6} {'neurons':>10} {'synapses':>12} {'w bytes':>10} "
                     f"{'cores':>6} {'packed':>6}")
        for placement, t in self.totals().items():
            packed = math.ceil(t["neurons"] / NEURONS_PER_CORE)
            lines.append(f"{placement:<16} {t['nodes']:>6} {t['neurons']:>10} {t['synapses']:>12} "
                         f"{t['weight_bytes']:>10} {t['cores']:>6} {packed:>6}")
        mem = "unknown [2]" if SYNAPTIC_MEMORY_PER_CORE is None else f"{SYNAPTIC_MEMORY_PER_CORE} B"
        lines.append(f"limits: {NEURONS_PER_CORE} neurons per core [1]; synaptic memory per core {mem}; "
                     "cores = sum over nodes of ceil(neurons / 8192) (one node per core), packed = ceil(total / 8192); "
                     "neurons are per time step; synaptic memory not checked while unknown")
        lines.extend(self.sources)
        return "\n".join(lines)


@dataclass
class ExportReport:
    """What an export wrote and how the network maps onto Loihi 2."""

    out: Path
    variant: str
    weights: str
    netx_files: list[NetxFile]
    mapping: MappingTable
    quant: QuantReport
    bundle: IRBundle = field(repr=False)


# ----------------------------------------------------------------------------------------------
# netx chains

def consumers(graph: NetworkIR) -> dict[str, list[str]]:
    """Node id -> ids of the nodes reading it (graph outputs count as a reader)."""
    readers: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for n in graph.nodes:
        for i in n.inputs:
            readers[i].append(n.id)
    for nid in graph.outputs.values():
        readers[nid].append("<output>")
    return readers


def _pair(conv: Node, idx: dict[str, Node], readers: dict[str, list[str]]) -> Node | None:
    """The neuron that is the only reader of a plain (spike-input, shared-weight) conv, if any."""
    if conv.op != "conv" or conv.attrs.get("per_step") or len(readers[conv.id]) != 1:
        return None
    neuron = idx.get(readers[conv.id][0])
    return neuron if neuron is not None and neuron.op == "neuron" else None


def netx_chains(graph: NetworkIR) -> list[list[tuple[Node, Node]]]:
    """Maximal chains (conv, neuron), (conv, neuron), … where each neuron feeds only the next conv."""
    idx, readers = graph.index(), consumers(graph)
    used: set[str] = set()
    chains = []
    for node in graph.nodes:
        if node.id in used or _pair(node, idx, readers) is None:
            continue
        chain = []
        conv: Node | None = node
        while conv is not None and (neuron := _pair(conv, idx, readers)) is not None:
            chain.append((conv, neuron))
            used.add(conv.id)
            nxt = readers[neuron.id]
            conv = idx.get(nxt[0]) if len(nxt) == 1 else None
        chains.append(chain)
    return chains


def _ascii(text: str) -> np.ndarray:
    return np.array([text.encode("ascii")])


def write_layer(group: h5py.Group, conv: Node, neuron: Node, in_channels: int) -> None:
    """One netx conv layer (slayer export layout) plus the exact parameters under `spiketrack/`."""
    a = conv.attrs
    _, cout, h, w = conv.shape
    group.create_dataset("type", data=_ascii("conv"))
    group.create_dataset("shape", data=np.array([cout, h, w], dtype=np.int64))
    group.create_dataset("inChannels", data=in_channels)
    group.create_dataset("outChannels", data=cout)
    group.create_dataset("kernelSize", data=np.array(a["kernel"], dtype=np.int64))
    group.create_dataset("stride", data=np.array([a["stride"]] * 2, dtype=np.int64))
    group.create_dataset("padding", data=np.array([a["padding"]] * 2, dtype=np.int64))
    group.create_dataset("dilation", data=np.array([1, 1], dtype=np.int64))
    group.create_dataset("groups", data=a["groups"])
    group.create_dataset("weight", data=conv.params["weight"].astype(np.float32))
    decay = neuron.attrs["decay"]
    nrn = group.create_group("neuron")
    nrn.create_dataset("type", data=np.bytes_("CUBA"))
    nrn.create_dataset("iDecay", data=4096)
    nrn.create_dataset("vDecay", data=4096 - decay[0] if decay else 4096)
    nrn.create_dataset("vThMant", data=max(1, (1 << (neuron.attrs["f_in"] - 1)) >> 6))
    nrn.create_dataset("refDelay", data=1)
    nrn.create_dataset("gradedSpike", data=True)
    st = group.create_group("spiketrack")
    for key, value in (("conv", conv.id), ("neuron", neuron.id), ("reset", neuron.attrs["reset"])):
        st.create_dataset(key, data=np.bytes_(value))
    for key, value in (("weight_exp", a["weight_exp"]), ("shift", a["shift"]), ("f_out", conv.frac_bits),
                       ("f_in", neuron.attrs["f_in"])):
        st.create_dataset(key, data=int(value))
    st.create_dataset("bias", data=conv.params["bias"])
    st.create_dataset("decay", data=np.asarray(decay, dtype=np.int64))


def write_netx_file(path: Path, graph: NetworkIR, chain: list[tuple[Node, Node]]) -> NetxFile:
    """Write one chain as a netx network without input layer (load with input_shape=(W, H, C))."""
    idx = graph.index()
    first = chain[0][0]
    src = idx[first.inputs[0]]
    layers = []
    with h5py.File(path, "w") as f:
        top = f.create_group("layer")
        in_channels = src.shape[1]
        for i, (conv, neuron) in enumerate(chain):
            write_layer(top.create_group(str(i)), conv, neuron, in_channels)
            layers.append(NetxLayer(conv.id, neuron.id, [conv.shape[1], conv.shape[2], conv.shape[3]],
                                    list(conv.params["weight"].shape)))
            in_channels = conv.shape[1]
    return NetxFile(f"{NETX_DIR}/{path.name}", graph.name, src.id, [src.shape[3], src.shape[2], src.shape[1]],
                    layers)


def netx_to_json(entry: NetxFile) -> dict[str, Any]:
    return {"file": entry.file, "graph": entry.graph, "input": entry.input,
            "input_shape_whc": entry.input_shape_whc,
            "layers": [vars(layer) for layer in entry.layers]}


def netx_from_json(data: dict[str, Any]) -> NetxFile:
    return NetxFile(data["file"], data["graph"], data["input"], list(data["input_shape_whc"]),
                    [NetxLayer(**layer) for layer in data["layers"]])


def check_netx_file(path: Path, entry: NetxFile, graph: NetworkIR) -> None:
    """UserError naming `path` unless it is readable HDF5 whose layers match the manifest and the IR."""
    idx = graph.index()
    try:
        with h5py.File(path, "r") as f:
            top = f["layer"]
            if len(top) != len(entry.layers):
                raise UserError(f"{len(top)} netx layers, manifest lists {len(entry.layers)}", path)
            for i, layer in enumerate(entry.layers):
                g = top[str(i)]
                shape = [int(v) for v in g["shape"][()]]
                weight = g["weight"][()]
                if shape != layer.shape_chw or list(weight.shape) != layer.weight_shape:
                    raise UserError(f"layer {i} has shape {shape} / weight {list(weight.shape)}, manifest says "
                                    f"{layer.shape_chw} / {layer.weight_shape}", path)
                conv = idx.get(layer.conv)
                if conv is None or list(conv.params["weight"].shape) != layer.weight_shape:
                    raise UserError(f"layer {i} ({layer.conv}) does not match the IR", path)
                if not np.array_equal(weight.astype(np.int64), conv.params["weight"]):
                    raise UserError(f"layer {i} ({layer.conv}) weights differ from the IR", path)
    except (OSError, KeyError) as exc:
        raise UserError(f"not a readable netx HDF5 file ({exc})", path) from None


# ----------------------------------------------------------------------------------------------
# Loihi 2 mapping

PLACEMENT = {
    "conv": ("neurocore", "8-bit weights, graded 0..4 spike input"),
    "add": ("neurocore", "dendritic sum (power-of-two weights) + graded relay neuron"),
    "add_pos": ("neurocore", "per-neuron bias (per step) + graded relay neuron"),
    "avgpool": ("neurocore", "fixed-weight synapses + graded relay neuron"),
    "upsample": ("neurocore", "fixed-weight synapses + graded relay neuron"),
    "repeat": ("neurocore", "graded relay over T steps"),
    "neuron": ("custom microcode", "multi-spike 0..4 graded neuron, soft reset (programmable neuron [1])"),
    "memory": ("custom microcode", "product of two spike trains (k^T v), state for the search side"),
    "retrieve": ("custom microcode", "runtime weights M (up to 16*N, beyond 8-bit synapses) or embedded core"),
    "conv_dense": ("host", "stem on real-valued pixels (FIXED_POINT.md)"),
    "gate": ("host", "softmax over template steps (embedded x86 core or host)"),
    "sigmoid": ("host", "sigmoid + box decoding (embedded x86 core or host)"),
}


def node_fan_in(node: Node, idx: dict[str, Node]) -> int:
    """Synaptic inputs per output element."""
    if node.op in ("conv", "conv_dense"):
        return math.prod(node.params["weight"].shape[-3:])
    if node.op == "avgpool":
        return node.attrs["kernel"] ** 2
    if node.op == "upsample":
        return 4
    if node.op == "retrieve":
        return idx[node.inputs[1]].shape[2]
    if node.op == "memory":
        return idx[node.inputs[0]].shape[2] * idx[node.inputs[0]].shape[3]
    if node.op == "gate":
        return idx[node.inputs[0]].shape[0]
    return len(node.inputs)


RELAY_CONSUMERS = ("neuron", "add", "add_pos", "avgpool", "upsample")


def mapping_rows(graph: NetworkIR) -> list[MappingRow]:
    """Rows of one graph. A conv whose readers all integrate it (neuron, add, pool, ...) owns no
    compartments: its synapses land in the readers' neurons, so only those are counted."""
    idx, readers = graph.index(), consumers(graph)
    rows = []
    for node in graph.nodes:
        if node.op == "input":
            continue
        placement, note = PLACEMENT[node.op]
        outputs = math.prod(node.shape[1:])
        fan_in = node_fan_in(node, idx)
        weight_bytes = int(node.params["weight"].size) if node.op in ("conv", "conv_dense") else 0
        integrated = node.op == "conv" and all(r in idx and idx[r].op in RELAY_CONSUMERS for r in readers[node.id])
        neurons = 0 if integrated or placement == "host" else outputs
        if integrated:
            note += "; into its readers' compartments"
        rows.append(MappingRow(graph.name, node.id, node.op, placement, neurons, fan_in, outputs * fan_in,
                               weight_bytes, math.ceil(neurons / NEURONS_PER_CORE), note))
    return rows


def loihi_mapping(ir: IRBundle | NetworkIR) -> MappingTable:
    """Per node: neurons, synapses (fan-in x neurons), weight bytes, placement on Loihi 2, cores."""
    graphs = list(ir.graphs().values()) if isinstance(ir, IRBundle) else [ir]
    return MappingTable([row for g in graphs for row in mapping_rows(g)])


# ----------------------------------------------------------------------------------------------
# export / load

def resolve_source(source: nn.Module | str | Path | None, variant: str | None = None) -> tuple[nn.Module, str]:
    """A model and a description of its weights from a model, a checkpoint path or None (default model)."""
    if isinstance(source, nn.Module):
        return source.eval(), "model passed in"
    from spiketrack.default_model import resolve_model

    resolved = resolve_model(source, variant)
    return resolved.model, resolved.weights


def lava_section(bundle: IRBundle, files: list[NetxFile]) -> dict[str, Any]:
    """Manifest section: netx files, and per graph the nodes that are custom (neuro) or host."""
    in_netx = {(f.graph, nid) for f in files for layer in f.layers for nid in (layer.conv, layer.neuron)}
    placement: dict[str, dict[str, list[str]]] = {}
    for name, g in bundle.graphs().items():
        rest = [n for n in g.nodes if n.op != "input" and (name, n.id) not in in_netx]
        placement[name] = {"custom": [n.id for n in rest if n.location == "neuro"],
                           "host": [n.id for n in rest if n.location == "host"]}
    return {"netx": [netx_to_json(f) for f in files], "placement": placement, "neuron_exact": False,
            "note": LAVA_NOTE}


def export_bundle(source: nn.Module | str | Path | None, out_dir: str | Path,
                  calibration_frames: Sequence[CalibrationFrame] | None = None,
                  config: QuantConfig = QuantConfig(), variant: str | None = None) -> ExportReport:
    """Quantize and write a Lava bundle to `out_dir` atomically (nothing is left behind on error).

    `source`: a SpikeTrack model, a checkpoint path, or None for the default model (`variant` picks
    the procedural variant when no checkpoint is shipped)."""
    model, weights = resolve_source(source, variant)
    result: QuantResult = quantize_model(model, calibration_frames, config)
    bundle = result.bundle
    bundle.meta["weights"] = weights
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        (tmp / NETX_DIR).mkdir()
        files = []
        for g in bundle.graphs().values():
            for k, chain in enumerate(netx_chains(g)):
                files.append(write_netx_file(tmp / NETX_DIR / f"{g.name}_{k:03d}.h5", g, chain))
        records = {f.file: file_record(tmp / f.file) for f in files}
        save_bundle(bundle, tmp, extra={"files": records, "lava": lava_section(bundle, files)})
    return ExportReport(out, bundle.variant, weights, files, loihi_mapping(bundle), result.report, bundle)


def load_export(folder: str | Path) -> tuple[IRBundle, list[NetxFile]]:
    """Load and validate a Lava bundle: hashes, IR arrays, and every netx file against manifest and IR."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    bundle = load_bundle(folder)
    try:
        files = [netx_from_json(d) for d in manifest["lava"]["netx"]]
    except (KeyError, TypeError) as exc:
        raise UserError(f"manifest has no valid 'lava' section ({exc})", folder / "manifest.json") from None
    graphs = bundle.graphs()
    for entry in files:
        if entry.file not in manifest["files"]:
            raise UserError(f"netx file {entry.file} is not listed with a hash", folder / "manifest.json")
        check_netx_file(folder / entry.file, entry, graphs[entry.graph])
    return bundle, files
