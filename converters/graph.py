"""Float graph of a SpikeTrack model: the IR's nodes with float64 params, built by walking the blocks.

`build_float_graphs(model)` walks the known block classes explicitly (no tracing) and returns the
template and search graphs with BN folded into every conv (`spiketrack.models.fuse`), float64
params and `frac_bits=None`. `run_float(graph, inputs)` executes such a graph in float64 with the
float model's semantics (round-half-even neuron); it feeds calibration and is the float side of
layer-by-layer comparisons. `converters.quantize` turns these graphs into the integer IR.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from converters.ir import Node, NetworkIR
from spiketrack.models.attention import SpikingLinearAttention, SpikingMLP, TransformerBlock
from spiketrack.models.conv_blocks import ConvBlock, Downsample, SepConv
from spiketrack.models.fuse import fuse_for_inference
from spiketrack.models.head import CenterHead
from spiketrack.models.neuron import MultiSpikeNeuron
from spiketrack.models.retrieval import ChannelGate, MemoryRetrieval, Retriever

MEMORY_NAMES = tuple(f"memory{i}" for i in range(6))
SIGMOID_CLAMP = (1e-4, 1 - 1e-4)


def fold_model(model: nn.Module) -> nn.Module:
    """A float64 eval copy of `model` with every BN folded into its conv."""
    return fuse_for_inference(copy.deepcopy(model).double())


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


@dataclass
class GraphBuilder:
    """Appends nodes in topological order; neuron nodes are named `<module path>@<call index>`."""

    name: str
    variant: str
    paths: dict[int, str]  # id(module) -> dotted module path
    nodes: list[Node] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def path(self, module: nn.Module) -> str:
        """Dotted path of a module of the walked model."""
        return self.paths[id(module)]

    def add(self, node_id: str, op: str, inputs: list[str], shape: tuple[int, ...], *, source: str,
            attrs: dict | None = None, params: dict | None = None, location: str = "neuro") -> str:
        """Append a node (ids must be unique) and return its id."""
        if node_id in self.shapes:
            raise ValueError(f"duplicate node id {node_id}")
        self.nodes.append(Node(node_id, op, list(inputs), tuple(shape), None, attrs or {}, params or {},
                               location, source))
        self.shapes[node_id] = tuple(shape)
        return node_id

    def shape(self, node_id: str) -> tuple[int, ...]:
        return self.shapes[node_id]

    def neuron(self, module: MultiSpikeNeuron, x: str) -> str:
        """A neuron call on edge `x`; decays are the sigmoid factors of the T-1 transitions."""
        path = self.path(module)
        k = self.calls.get(path, 0)
        self.calls[path] = k + 1
        steps = self.shape(x)[0]
        decay = [float(module.decay[t].detach().double().sigmoid()) for t in range(steps - 1)]
        return self.add(f"{path}@{k}", "neuron", [x], self.shape(x), source=path,
                        attrs={"decay_float": decay, "reset": module.reset, "max_spike": module.max_value})

    def conv(self, convs: list[nn.Module], x: str, source: str, *, dense: bool = False,
             per_step: bool = False) -> str:
        """A (BN-folded) conv; `per_step`: `convs` holds one conv per time step (step t uses convs[t])."""
        first = convs[0]
        t, _, h, w = self.shape(x)
        k = first.kernel_size
        kh, kw = (k[0], k[0]) if len(k) == 1 else k
        stride, pad = first.stride[0], first.padding[0]
        weights = [_np(c.weight).reshape(c.out_channels, -1, kh, kw) for c in convs]
        biases = [_np(c.bias) if c.bias is not None else np.zeros(c.out_channels) for c in convs]
        params = ({"weight": np.stack(weights), "bias": np.stack(biases)} if per_step
                  else {"weight": weights[0], "bias": biases[0]})
        shape = (t, first.out_channels, (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1)
        attrs = {"kernel": [kh, kw], "stride": stride, "padding": pad, "groups": first.groups,
                 "per_step": per_step}
        return self.add(source, "conv_dense" if dense else "conv", [x], shape, source=source, attrs=attrs,
                        params=params, location="host" if dense else "neuro")

    def add_edges(self, inputs: list[str], source: str, tag: str) -> str:
        t = max(self.shape(i)[0] for i in inputs)
        return self.add(f"{source}:{tag}", "add", inputs, (t,) + self.shape(inputs[0])[1:], source=source)

    def add_pos(self, x: str, tables: list[torch.Tensor], source: str, tag: str) -> str:
        _, c, h, w = self.shape(x)
        table = np.stack([_np(tab).reshape(c, h, w) for tab in tables])
        return self.add(f"{source}:{tag}", "add_pos", [x], self.shape(x), source=source,
                        params={"table": table})


def pos_tables(module: SpikingLinearAttention | Retriever, branch: str, steps: int) -> list[torch.Tensor]:
    """The positional tables the branch reads: search one table, templates steps 0..T-1 (min(t, 3))."""
    if branch == "search":
        return [module.s_pos_embed]
    return [module.t_pos_embeds[min(t, len(module.t_pos_embeds) - 1)] for t in range(steps)]


def walk_downsample(b: GraphBuilder, m: Downsample, x: str) -> str:
    if m.encode_spike is not None:
        x = b.neuron(m.encode_spike, x)
    return b.conv([m.encode_conv], x, b.path(m.encode_conv), dense=m.encode_spike is None)


def walk_sepconv(b: GraphBuilder, m: SepConv, x: str) -> str:
    y = b.conv([m.pwconv1[0]], b.neuron(m.spike1, x), b.path(m.pwconv1))
    y = b.conv([m.dwconv[0]], b.neuron(m.spike2, y), b.path(m.dwconv))
    return b.conv([m.pwconv2[0]], b.neuron(m.spike3, y), b.path(m.pwconv2))


def walk_convblock(b: GraphBuilder, m: ConvBlock, x: str) -> str:
    path = b.path(m)
    x = b.add_edges([x, walk_sepconv(b, m.Conv, x)], path, "add0")
    y = b.conv([m.conv1], b.neuron(m.spike1, x), b.path(m.conv1))
    y = b.conv([m.conv2], b.neuron(m.spike2, y), b.path(m.conv2))
    return b.add_edges([x, y], path, "add1")


def walk_mlp(b: GraphBuilder, m: SpikingMLP, x: str) -> str:
    y = b.conv([m.fc1_conv], b.neuron(m.fc1_spike, x), b.path(m.fc1_conv))
    return b.conv([m.fc2_conv], b.neuron(m.fc2_spike, y), b.path(m.fc2_conv))


def walk_attention(b: GraphBuilder, m: SpikingLinearAttention, x: str, branch: str) -> str:
    path = b.path(m)
    s = b.neuron(m.head_spike, b.add_pos(x, pos_tables(m, branch, b.shape(x)[0]), path, "pos"))
    q = b.neuron(m.q_spike, b.conv([m.q_conv[0]], s, b.path(m.q_conv)))
    k = b.neuron(m.k_spike, b.conv([m.k_conv[0]], s, b.path(m.k_conv)))
    v = b.neuron(m.v_spike, b.conv([m.v_conv[0]], s, b.path(m.v_conv)))
    mem = memory_node(b, k, v, m.num_heads, path)
    o = b.neuron(m.attn_spike, retrieve_node(b, q, mem, m.num_heads, path, "retrieve"))
    return b.conv([m.proj_conv[0]], o, b.path(m.proj_conv))


def memory_node(b: GraphBuilder, k: str, v: str, heads: int, source: str) -> str:
    t, c, _, _ = b.shape(k)
    cv = b.shape(v)[1]
    return b.add(f"{source}:memory", "memory", [k, v], (t, heads, c // heads, cv // heads), source=source,
                 attrs={"heads": heads})


def retrieve_node(b: GraphBuilder, q: str, mem: str, heads: int, source: str, tag: str) -> str:
    t, _, h, w = b.shape(q)
    _, _, _, dv = b.shape(mem)
    return b.add(f"{source}:{tag}", "retrieve", [q, mem], (t, heads * dv, h, w), source=source,
                 attrs={"heads": heads})


def walk_block(b: GraphBuilder, m: TransformerBlock, x: str, branch: str) -> str:
    path = b.path(m)
    x = b.add_edges([x, walk_sepconv(b, m.conv, x)], path, "add0")
    x = b.add_edges([x, walk_attention(b, m.attn, x, branch)], path, "add1")
    return b.add_edges([x, walk_mlp(b, m.mlp, x)], path, "add2")


def to_grid_node(b: GraphBuilder, x: str, size: int, source: str) -> str:
    t, c, h, w = b.shape(x)
    if (h, w) == (size, size):
        return x
    k = h // size
    if h != w or h % size or k & (k - 1):
        raise ValueError(f"{source}: cannot pool {h}x{w} to {size}x{size} with a power-of-two window")
    return b.add(f"{source}:pool", "avgpool", [x], (t, c, size, size), source=source, attrs={"kernel": k})


def walk_template_memory(b: GraphBuilder, m: Retriever, z: str) -> str:
    """Template half of a retriever (spec §7.2): stream -> memory node."""
    path = b.path(m)
    z = to_grid_node(b, z, m.pos_size, path)
    z = b.neuron(m.head_spike, b.add_pos(z, pos_tables(m, "template", b.shape(z)[0]), path, "pos"))
    v = b.neuron(m.v_spike, b.conv([m.v_conv[0]], z, b.path(m.v_conv)))
    k = b.neuron(m.k_spike, b.conv([m.k_conv[0]], z, b.path(m.k_conv)))
    return memory_node(b, k, v, m.num_heads, path)


def walk_retriever(b: GraphBuilder, m: Retriever, search: str, mem: str) -> str:
    """Search half of a retriever (spec §7.3-7.5): stream + memory -> retrieved features."""
    path = b.path(m)
    steps = b.shape(mem)[0]
    x = to_grid_node(b, search, m.pos_size, path)
    x = b.neuron(m.head_spike, b.add_pos(x, pos_tables(m, "search", 1), path, "pos"))
    q0 = b.conv([m.q_conv[0]], x, b.path(m.q_conv))
    qr = q0 if steps == 1 else b.add(f"{path}:repeat", "repeat", [q0], (steps,) + b.shape(q0)[1:], source=path,
                                     attrs={"steps": steps})
    r = retrieve_node(b, b.neuron(m.q_spike, qr), mem, m.num_heads, path, "retrieve0")
    a = b.conv([s[0] for s in m.seg_responder_dw], b.neuron(m.q_spike, r), b.path(m.seg_responder_dw),
               per_step=True)
    a = b.conv([s[0] for s in m.seg_responder_pw], b.neuron(m.seg_dw_spike, a), b.path(m.seg_responder_pw),
               per_step=True)
    a = b.neuron(m.seg_pw_spike, b.add_edges([q0, a], path, "add_query"))
    f = b.neuron(m.fuser_spike, b.conv([m.fuser[0]], a, b.path(m.fuser)))
    o = b.neuron(m.attn_spike, retrieve_node(b, f, mem, m.num_heads, path, "retrieve1"))
    if steps > 1:
        o = b.neuron(m.gate_spike, gate_node(b, m.gate, o))
    o = b.conv([m.proj_conv[0]], o, b.path(m.proj_conv))
    _, _, h, w = b.shape(search)
    if b.shape(o)[2:] != (h, w):
        factor = h // b.shape(o)[2]
        o = b.add(f"{path}:upsample", "upsample", [o], b.shape(o)[:2] + (h, w), source=path,
                  attrs={"factor": factor}, params=upsample_weights(b.shape(o)[2], factor))
    return o


def gate_node(b: GraphBuilder, m: ChannelGate, o: str) -> str:
    t, cv, p, _ = b.shape(o)
    neuron = m.mlp[1]
    params = {"w1": _np(m.mlp[0].weight)[:, :, 0], "b1": _np(m.mlp[0].bias),
              "w2": _np(m.mlp[2].weight)[:, :, 0], "b2": _np(m.mlp[2].bias)}
    attrs = {"neuron_decay": [float(neuron.decay[i].detach().double().sigmoid()) for i in range(t - 1)],
             "reset": neuron.reset, "max_spike": neuron.max_value}
    return b.add(b.path(m), "gate", [o], (1, cv, p, p), source=b.path(m), attrs=attrs, params=params,
                 location="host")


def upsample_weights(size_in: int, factor: int) -> dict[str, np.ndarray]:
    """Integer per-axis bilinear weights (units of 1/(2*factor)), align_corners=False, PyTorch clamping."""
    size_out = size_in * factor
    units = 2 * factor
    w = np.zeros((size_out, size_in), dtype=np.int64)
    for i in range(size_out):
        src2 = max(2 * i + 1 - factor, 0)  # 2*factor*src, src = (i + 0.5) / factor - 0.5 clamped at 0
        i0 = src2 // units
        frac = src2 - i0 * units
        i1 = min(i0 + 1, size_in - 1)
        w[i, i0] += units - frac
        w[i, i1] += frac
    return {"wy": w, "wx": w.copy()}


def walk_mrm(b: GraphBuilder, m: MemoryRetrieval, search: str, mem: str) -> str:
    path = b.path(m)
    search = b.add_edges([search, walk_retriever(b, m.retriever, search, mem)], path, "add0")
    return b.add_edges([search, walk_mlp(b, m.mlp, search)], path, "add1")


def walk_stage(b: GraphBuilder, m: nn.Module, x: str, branch: str) -> str:
    """One backbone stage module (Downsample, ConvBlock or TransformerBlock)."""
    if isinstance(m, Downsample):
        return walk_downsample(b, m, x)
    if isinstance(m, ConvBlock):
        return walk_convblock(b, m, x)
    if isinstance(m, TransformerBlock):
        return walk_block(b, m, x, branch)
    raise TypeError(f"unknown backbone stage {type(m).__name__}")


def walk_head(b: GraphBuilder, m: CenterHead, x: str) -> dict[str, str]:
    """Spiking head: shared input spike, three towers; sigmoid (host) on score and size."""
    x = b.neuron(m.spike, x)
    outputs = {}
    for tower in CenterHead.TOWERS:
        y = x
        for i in range(1, 5):
            conv = getattr(m, f"conv{i}_{tower}")
            y = b.neuron(getattr(m, f"{tower}{i}_spike"), b.conv([conv[0]], y, b.path(conv)))
        y = b.conv([getattr(m, f"conv5_{tower}")], y, b.path(getattr(m, f"conv5_{tower}")))
        outputs[tower] = y if tower == "offset" else b.add(
            f"{b.path(m)}:sigmoid_{tower}", "sigmoid", [y], b.shape(y), source=b.path(m),
            attrs={"clamp": list(SIGMOID_CLAMP)}, location="host")
    return {"score_map": outputs["ctr"], "size_map": outputs["size"], "offset_map": outputs["offset"]}


def build_float_graphs(model: nn.Module) -> tuple[NetworkIR, NetworkIR]:
    """Template and search graphs of `model` (a SpikeTrack) with folded float64 params."""
    cfg = model.cfg
    folded = fold_model(model)
    paths = {id(mod): name for name, mod in folded.named_modules()}
    size, steps = cfg.search_size, cfg.num_templates
    enc = folded.encoder

    tb = GraphBuilder("template", cfg.name, paths)
    z = tb.add("templates", "input", [], (steps, 3, size, size), source="input", attrs={"kind": "image"},
               location="host")
    memories = {}
    for name, modules, mrm in zip(MEMORY_NAMES, enc.segments(), enc.mrm):
        for mod in modules:
            z = walk_stage(tb, mod, z, "template")
        memories[name] = walk_template_memory(tb, mrm.retriever, z)

    sb = GraphBuilder("search", cfg.name, paths)
    x = sb.add("search", "input", [], (1, 3, size, size), source="input", attrs={"kind": "image"},
               location="host")
    for name in MEMORY_NAMES:
        sb.add(name, "input", [], tb.shape(memories[name]), source=memories[name], attrs={"kind": "memory"})
    for name, modules, mrm in zip(MEMORY_NAMES, enc.segments(), enc.mrm):
        for mod in modules:
            x = walk_stage(sb, mod, x, "search")
        x = walk_mrm(sb, mrm, x, name)
    outputs = walk_head(sb, folded.decoder, x)
    template = NetworkIR("template", cfg.name, tb.nodes, ["templates"], memories)
    search = NetworkIR("search", cfg.name, sb.nodes, ["search", *MEMORY_NAMES], outputs)
    template.validate()
    search.validate()
    return template, search


# ----------------------------------------------------------------------------------------------
# float64 execution (the float model's semantics on the graph)

def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(T, C, H, W) -> (T, h, N, C/h): channel c to head c // (C/h), tokens row-major."""
    t, c = x.shape[:2]
    return x.reshape(t, heads, c // heads, -1).transpose(-1, -2)


def merge_heads(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(T, heads, N, dv) -> (T, heads*dv, H, W)."""
    t, heads, _, dv = x.shape
    return x.transpose(-1, -2).reshape(t, heads * dv, h, w)


def float_neuron(x: torch.Tensor, decay: list[float], reset: str, max_spike: int) -> torch.Tensor:
    """Float multi-spike neuron (round half to even), values s/D, time first."""
    norm = float(max_spike)
    mem = x[0]
    out = [torch.round(mem.clamp(0, max_spike)) / norm]
    for t in range(1, x.shape[0]):
        r = out[-1] if reset == "normalized" else out[-1] * norm
        mem = (mem - r) * decay[t - 1] + x[t]
        out.append(torch.round(mem.clamp(0, max_spike)) / norm)
    return torch.stack(out)


def float_gate(o: torch.Tensor, params: dict[str, np.ndarray], attrs: dict) -> torch.Tensor:
    """Channel gate (spec §7.6) in float64 on real spike values (T, Cv, P, P) -> (1, Cv, P, P)."""
    t, cv = o.shape[:2]
    p = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in params.items()}
    x = o.to(torch.float64).reshape(t, cv, -1).permute(1, 2, 0)  # (Cv, P^2, T)
    g = torch.einsum("oi,cit->tco", p["w1"], x) + p["b1"]  # (T, Cv, P^2/2)
    g = float_neuron(g, attrs["neuron_decay"], attrs["reset"], attrs["max_spike"])
    g = torch.einsum("oi,tci->cto", p["w2"], g)[..., 0] + p["b2"]  # (Cv, T)
    w = g.softmax(dim=-1).T  # (T, Cv)
    return (o.to(torch.float64) * w[:, :, None, None]).sum(0, keepdim=True)


def float_conv(x: torch.Tensor, node: Node) -> torch.Tensor:
    a = node.attrs
    w = torch.as_tensor(node.params["weight"], dtype=x.dtype)
    bias = torch.as_tensor(node.params["bias"], dtype=x.dtype)
    if a["per_step"]:
        return torch.cat([F.conv2d(x[t:t + 1], w[t], bias[t], a["stride"], a["padding"], 1, a["groups"])
                          for t in range(x.shape[0])])
    return F.conv2d(x, w, bias, a["stride"], a["padding"], 1, a["groups"])


def float_op(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    """Real-valued output of one node of the float graph."""
    op, a = node.op, node.attrs
    if op in ("conv", "conv_dense"):
        return float_conv(xs[0], node)
    if op == "neuron":
        return float_neuron(xs[0], a["decay_float"], a["reset"], a["max_spike"])
    if op == "add":
        return sum(xs[1:], xs[0])
    if op == "add_pos":
        table = torch.as_tensor(node.params["table"], dtype=xs[0].dtype)
        idx = [min(t, table.shape[0] - 1) for t in range(xs[0].shape[0])]
        return xs[0] + table[idx]
    if op == "avgpool":
        return F.avg_pool2d(xs[0], a["kernel"])
    if op == "upsample":
        return F.interpolate(xs[0], size=tuple(node.shape[2:]), mode="bilinear", align_corners=False)
    if op == "repeat":
        return xs[0].expand(a["steps"], -1, -1, -1)
    if op == "memory":
        k, v = (split_heads(x, a["heads"]) for x in xs)
        return k.transpose(-1, -2) @ v
    if op == "retrieve":
        q, mem = xs
        d = mem.shape[2]
        return merge_heads((split_heads(q, a["heads"]) @ mem) * (2.0 / math.sqrt(d)), *q.shape[2:])
    if op == "gate":
        return float_gate(xs[0], node.params, a).to(xs[0].dtype)
    if op == "sigmoid":
        return xs[0].sigmoid().clamp(*a["clamp"])
    raise ValueError(f"no float semantics for op {op!r}")


@torch.no_grad()
def run_float(graph: NetworkIR, inputs: dict[str, torch.Tensor],
              dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Every node's real-valued output; `inputs` maps graph input names to (T, ...) tensors."""
    values: dict[str, torch.Tensor] = {}
    for node in graph.nodes:
        if node.op == "input":
            values[node.id] = inputs[node.id].to(dtype).reshape(node.shape)
        else:
            values[node.id] = float_op(node, [values[i] for i in node.inputs])
    return values
