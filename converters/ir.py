"""NetworkIR: the quantized SpikeTrack graph every backend consumes (Lava, ONNX, NIR, profiler).

A bundle (`IRBundle`) holds two graphs, the inference split of spec §9:

* ``template`` — templates ``(T, 3, S, S)`` → the six memories ``memory0 … memory5``
  (run once per template update; the memories are state held by the search side);
* ``search`` — search crop ``(1, 3, S, S)`` + ``memory0 … memory5`` → ``score_map``,
  ``size_map``, ``offset_map`` (run per frame).

Every graph is a list of `Node`s in topological order. All numeric semantics are those of
docs/FIXED_POINT.md; this docstring says which fields carry them.

Conventions
-----------
* Batch is always 1 and is not stored. Every edge is ``(T, C, H, W)`` (time first), except
  memories ``(T, h, d, dv)``. ``Node.shape`` is the shape of the node's single output.
* Every edge carries integers (int64 in references) with ``Node.frac_bits`` = F:
  ``real = int * 2**-F``. Spike edges (outputs of ``neuron``) have F = 2 and values 0..4
  (real s/4); memories have F = 4 (``M_int = k^T v`` of two spike edges).
* ``rshift(x, n) = floor((x + 2**(n-1)) / 2**n)`` for n > 0, ``x * 2**-n`` for n <= 0.
* ``sat(x)`` clamps to ``[-2**23, 2**23 - 1]``; every op below marked *sat* applies it to its
  output (backends should count saturated elements per node).
* Tokens: ``N = H * W``, row-major (token n = h * W + w). Heads: channel c of a C-wide edge
  belongs to head ``c // (C / heads)``, index ``c % (C / heads)``.
* Params are integer arrays (int64 once loaded; stored in the smallest integer dtype) except
  for host ops, whose params are float64. Attrs are JSON values.
* ``location`` is ``'neuro'`` (maps to neuromorphic cores) or ``'host'`` (a CPU next to the
  chip). ``source`` is the dotted path of the float module the node comes from (neurons:
  ``path@k``, the k-th call of that module in this graph — the naming of
  ``spiketrack.models.probes.record_spikes``, so float and fixed spikes line up by node id).

Op kinds (inputs in order; time steps are independent unless stated)
---------------------------------------------------------------------
``input``  (no inputs) attrs ``kind``: ``'image'`` (host: ``x_int = sat(floor(x * 2**F + 0.5))``
    of the normalised crop, location host) or ``'memory'`` (integer memories from the template
    graph, F = 4, location neuro; ``source`` is the template node that produced it). The node id
    is the graph input name.
``conv``  [x] spike input (F_in = 2). params ``weight`` ``(Cout, Cin/groups, kh, kw)`` int8 range,
    ``bias`` ``(Cout,)`` in F_out; with attrs ``per_step`` true they gain a leading T axis and
    step t uses ``weight[t]``, ``bias[t]``. attrs ``kernel [kh, kw]``, ``stride``, ``padding``
    (zeros, symmetric), ``groups``, ``weight_exp`` e_w (real W = w * 2**e_w), ``shift`` =
    ``F_in - e_w - F_out``, ``per_step``. ``y = sat(rshift(conv(x, w), shift) + bias)``.
    1-D convs / linears of the model appear as 1x1 convs on the token grid.
``conv_dense``  [x] real-valued input (the stem; location host). Same params, attrs and
    formula as ``conv`` with F_in the input's F.
``neuron``  [x] multi-spike neuron, output spikes (F = 2). attrs ``f_in`` (F of x), ``decay``
    (list of T-1 ints, 12-bit: ``round(sigmoid(decay) * 4096)``), ``reset`` ``'normalized'``
    (subtract s/4, the official model) or ``'integer'`` (subtract s), ``max_spike`` 4.
    ``v_0 = x_0``; ``s_t = clamp(rshift(v_t, f_in), 0, 4)``; for t >= 1
    ``v_t = sat(rshift((v_{t-1} - r_{t-1}) * decay[t-1], 12) + x_t)`` with
    ``r = s * 2**(f_in-2)`` (normalized) or ``s * 2**f_in`` (integer).
``add``  [a, b, ...] attrs ``shifts`` (one per input, ``F_i - F_out``).
    ``y = sat(Σ rshift(x_i, shifts[i]))``. An input with T = 1 is broadcast over the output's T.
``add_pos``  [x] positional table. params ``table`` ``(n_tab, C, H, W)`` in F_out. attrs
    ``shift`` (``F_in - F_out``). ``y_t = sat(rshift(x_t, shift) + table[min(t, n_tab-1)])``.
``avgpool``  [x] k x k, stride k (k**2 a power of two; adaptive pooling to the P x P grid).
    attrs ``kernel`` k, ``shift`` (``log2(k*k) + F_in - F_out``). ``y = sat(rshift(Σ_window x, shift))``.
``upsample``  [x] bilinear, align_corners=False, integer factor f ∈ {2, 4}, borders clamped as
    PyTorch. params ``wy`` ``(H_out, H_in)`` and ``wx`` ``(W_out, W_in)``: per-axis integer
    weights in units of 1/(2f) (rows sum to 2f). attrs ``factor``, ``shift``
    (``2*log2(2f) + F_in - F_out``). ``y = sat(rshift(wy @ x @ wx^T, shift))`` per (t, c).
``repeat``  [x] with T = 1 → ``attrs['steps']`` identical steps (the MRM query replicated over
    template steps). F unchanged.
``memory``  [k, v] spike edges ``(T, C, H, W)`` and ``(T, Cv, H, W)`` → ``(T, h, d, dv)``,
    ``d = C/h``, ``dv = Cv/h``. attrs ``heads``. ``M[t, j, a, b] = Σ_n k[t, j*d+a, n] * v[t, j*dv+b, n]``
    (exact, F = 4).
``retrieve``  [q, M] q spikes ``(T, C, H, W)``, M ``(T, h, d, dv)`` (step t reads ``M[t]``) →
    ``(T, h*dv, H, W)``. attrs ``heads``, ``multiplier`` m (16-bit unsigned), ``shift`` n, with
    ``m * 2**-n ≈ 2/sqrt(d) * 2**(F_out - F_q - F_M)``.
    ``acc[t, j*dv+b, n] = Σ_a q[t, j*d+a, n] * M[t, j, a, b]``; ``y = sat(rshift(acc * m, n))``.
``gate``  [o] host (t3 only): channel gate of spec §7.6 on spike input ``(T, Cv, P, P)`` → ``(1, Cv, P, P)``.
    float64 params ``w1 (P²/2, P²)``, ``b1``, ``w2 (1, P²/2)``, ``b2``; attrs ``neuron_decay``
    (float sigmoid factors, T-1), ``reset``, ``max_spike``. Runs the float model on ``o * 2**-F_in`` in float64
    (round-half-even neuron), result requantized ``sat(floor(y * 2**F_out + 0.5))``.
``sigmoid``  [x] host: ``y = sat(floor(clamp(sigmoid(x * 2**-F_in), lo, hi) * 2**F_out + 0.5))``;
    attrs ``clamp [lo, hi]``. The head's score and size maps.

Bundle layout on disk: ``manifest.json`` (format, version, variant, meta, both graphs with every
node's fields, a table of arrays) + ``arrays.npz`` (every param, key ``<graph>.<node index>.<param>``)
+ files listed in ``manifest['files']`` with their sha256 and size (checked on load).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spiketrack.errors import UserError

FORMAT = "spiketrack-ir"
VERSION = 1
ARRAYS_FILE = "arrays.npz"
MANIFEST_FILE = "manifest.json"
ACC_BITS = 24  # signed range of every activation edge
SPIKE_FRAC_BITS = 2
MEMORY_FRAC_BITS = 4
DECAY_BITS = 12
OPS = ("input", "conv", "conv_dense", "neuron", "add", "add_pos", "avgpool", "upsample", "repeat",
       "memory", "retrieve", "gate", "sigmoid")
HOST_OPS = ("gate", "sigmoid", "conv_dense")
LOCATIONS = ("neuro", "host")
GRAPHS = ("template", "search")


@dataclass
class Node:
    """One op of the graph; see the module docstring for each `op`'s attrs and params."""

    id: str
    op: str
    inputs: list[str]
    shape: tuple[int, ...]  # output (T, C, H, W); memories (T, h, d, dv)
    frac_bits: int | None  # F of the output edge (None only in the unquantized float graph)
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    location: str = "neuro"
    source: str = ""


@dataclass
class NetworkIR:
    """One graph: nodes in topological order, named inputs (node ids) and outputs (name -> node id)."""

    name: str
    variant: str
    nodes: list[Node]
    inputs: list[str]
    outputs: dict[str, str]

    def node(self, node_id: str) -> Node:
        """The node with this id (KeyError if absent)."""
        return self.index()[node_id]

    def index(self) -> dict[str, Node]:
        """Node id -> node."""
        return {n.id: n for n in self.nodes}

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Graph input name -> shape."""
        idx = self.index()
        return {name: idx[name].shape for name in self.inputs}

    def validate(self) -> None:
        """ValueError unless ids are unique, ops/locations known and every input defined earlier."""
        seen: set[str] = set()
        for n in self.nodes:
            if n.id in seen:
                raise ValueError(f"{self.name}: duplicate node id {n.id}")
            if n.op not in OPS or n.location not in LOCATIONS:
                raise ValueError(f"{self.name}: node {n.id} has unknown op {n.op!r} or location {n.location!r}")
            if n.op in HOST_OPS and n.location != "host":
                raise ValueError(f"{self.name}: host op {n.op} at node {n.id} is placed on {n.location}")
            missing = [i for i in n.inputs if i not in seen]
            if missing:
                raise ValueError(f"{self.name}: node {n.id} reads {missing} before they are defined")
            seen.add(n.id)
        bad = [i for i in [*self.inputs, *self.outputs.values()] if i not in seen]
        if bad:
            raise ValueError(f"{self.name}: graph inputs/outputs {bad} are not nodes")


@dataclass
class IRBundle:
    """The two graphs of the inference split plus free-form metadata (weights, calibration, report)."""

    variant: str
    template: NetworkIR
    search: NetworkIR
    meta: dict[str, Any] = field(default_factory=dict)

    def graphs(self) -> dict[str, NetworkIR]:
        """'template' and 'search' graphs by name."""
        return {"template": self.template, "search": self.search}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _storage(array: np.ndarray) -> np.ndarray:
    """Integers in the smallest signed dtype holding them; floats as float64."""
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float64)
    if array.size == 0:
        return array.astype(np.int8)
    lo, hi = int(array.min()), int(array.max())
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return array.astype(dtype)
    return array.astype(np.int64)


def _node_json(node: Node, keys: dict[str, str]) -> dict[str, Any]:
    return {"id": node.id, "op": node.op, "inputs": list(node.inputs), "shape": list(node.shape),
            "frac_bits": node.frac_bits, "attrs": node.attrs, "location": node.location,
            "source": node.source, "params": keys}


def graph_to_json(graph: NetworkIR, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON form of a graph; its params are added to `arrays` under `<graph>.<index>.<param>`."""
    nodes = []
    for i, node in enumerate(graph.nodes):
        keys = {}
        for pname, value in node.params.items():
            key = f"{graph.name}.{i}.{pname}"
            arrays[key] = _storage(np.asarray(value))
            keys[pname] = key
        nodes.append(_node_json(node, keys))
    return {"name": graph.name, "variant": graph.variant, "inputs": list(graph.inputs),
            "outputs": dict(graph.outputs), "nodes": nodes}


def graph_from_json(data: dict[str, Any], arrays: dict[str, np.ndarray]) -> NetworkIR:
    """Inverse of `graph_to_json` (integer params come back as int64, float params as float64)."""
    nodes = []
    for nd in data["nodes"]:
        params = {}
        for pname, key in nd["params"].items():
            a = arrays[key]
            params[pname] = a.astype(np.float64 if np.issubdtype(a.dtype, np.floating) else np.int64)
        nodes.append(Node(nd["id"], nd["op"], list(nd["inputs"]), tuple(nd["shape"]), nd["frac_bits"],
                          nd["attrs"], params, nd["location"], nd["source"]))
    return NetworkIR(data["name"], data["variant"], nodes, list(data["inputs"]), dict(data["outputs"]))


def save_bundle(bundle: IRBundle, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `manifest.json` + `arrays.npz` into an existing (temporary) folder.

    Callers wanting atomicity pass the temporary folder of `spiketrack.utils.atomic.atomic_dir`.
    `extra` entries are merged into the manifest (e.g. the Lava export section); its `files`
    entry, if any, is extended with the arrays file.
    """
    folder = Path(folder)
    arrays: dict[str, np.ndarray] = {}
    graphs = {name: graph_to_json(g, arrays) for name, g in bundle.graphs().items()}
    for g in bundle.graphs().values():
        g.validate()
    np.savez(folder / ARRAYS_FILE, **arrays)
    extra = dict(extra or {})
    files = dict(extra.pop("files", {}))
    files[ARRAYS_FILE] = file_record(folder / ARRAYS_FILE)
    manifest = {"format": FORMAT, "version": VERSION, "variant": bundle.variant, "meta": bundle.meta,
                "graphs": graphs, "files": files, **extra}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, default=_json_default))
    return folder


def file_record(path: Path) -> dict[str, Any]:
    """Size and sha256 of a bundle file, as listed in the manifest."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The bundle's manifest, with its listed files checked (present, size, sha256) → UserError."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise UserError("not an IR bundle (no manifest.json)", folder)
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"manifest is not valid JSON ({exc})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"manifest format is not {FORMAT!r}", path)
    if manifest.get("version") != VERSION:
        raise UserError(f"unsupported IR version {manifest.get('version')} (expected {VERSION})", path)
    for name, rec in manifest.get("files", {}).items():
        check_file(folder / name, rec)
    return manifest


def check_file(path: Path, record: dict[str, Any]) -> None:
    """UserError naming `path` if it is missing or its size / sha256 differ from the manifest."""
    if not path.is_file():
        raise UserError("file listed in the manifest is missing", path)
    if path.stat().st_size != record["bytes"]:
        raise UserError(f"size {path.stat().st_size} bytes differs from the manifest's {record['bytes']} "
                        "(truncated or replaced)", path)
    if sha256_file(path) != record["sha256"]:
        raise UserError("sha256 differs from the manifest (file corrupt or replaced)", path)


def load_bundle(folder: str | Path) -> IRBundle:
    """Read a bundle written by `save_bundle`; any inconsistency is a UserError naming the file."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    arrays_path = folder / ARRAYS_FILE
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read the arrays ({exc})", arrays_path) from None
    graphs = {}
    for name in GRAPHS:
        try:
            graphs[name] = graph_from_json(manifest["graphs"][name], arrays)
            graphs[name].validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"graph {name!r} is malformed or does not match {ARRAYS_FILE} ({exc})",
                            folder / MANIFEST_FILE) from None
        check_param_shapes(graphs[name], folder / MANIFEST_FILE)
    return IRBundle(manifest["variant"], graphs["template"], graphs["search"], manifest.get("meta", {}))


def expected_param_shapes(node: Node, input_shapes: list[tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Shapes the params of `node` must have given its input shapes (ops with params only)."""
    if node.op in ("conv", "conv_dense"):
        kh, kw = node.attrs["kernel"]
        cout, cin = node.shape[1], input_shapes[0][1]
        lead = (node.shape[0],) if node.attrs.get("per_step") else ()
        return {"weight": lead + (cout, cin // node.attrs["groups"], kh, kw), "bias": lead + (cout,)}
    if node.op == "add_pos":
        return {"table": (node.params["table"].shape[0],) + tuple(node.shape[1:])}
    if node.op == "upsample":
        return {"wy": (node.shape[2], input_shapes[0][2]), "wx": (node.shape[3], input_shapes[0][3])}
    if node.op == "gate":
        tokens = input_shapes[0][2] * input_shapes[0][3]
        return {"w1": (tokens // 2, tokens), "b1": (tokens // 2,), "w2": (1, tokens // 2), "b2": (1,)}
    return {}


def check_param_shapes(graph: NetworkIR, path: Path) -> None:
    """UserError naming `path` if any param's shape does not fit its node."""
    idx = graph.index()
    for node in graph.nodes:
        want = expected_param_shapes(node, [idx[i].shape for i in node.inputs])
        for pname, shape in want.items():
            got = tuple(node.params[pname].shape) if pname in node.params else None
            if got != shape:
                raise UserError(f"{graph.name} node {node.id}: param {pname} has shape {got}, expected {shape}",
                                path)


def describe(graph: NetworkIR) -> str:
    """A human-readable table of the graph: id, op, location, F, shape, inputs."""
    rows = [f"{graph.name} graph ({graph.variant}): {len(graph.nodes)} nodes; "
            f"inputs {graph.inputs}; outputs {graph.outputs}"]
    for n in graph.nodes:
        rows.append(f"  {n.id:<52} {n.op:<10} {n.location:<5} F={n.frac_bits!s:<3} "
                    f"{'x'.join(map(str, n.shape)):<16} <- {', '.join(n.inputs)}")
    return "\n".join(rows)
