"""Golden fixed-point reference: runs an integer NetworkIR end to end (docs/FIXED_POINT.md, bit exact).

Activations are int64 tensors. Convolutions, memories and retrievals run as float64 products of
integer tensors, which is exact: every operand and partial sum is an integer of magnitude
< 2**53 (conv: |w| <= 2**7, |x| < 2**23, fan-in < 2**22 (checked), so |acc| < 2**52; memory:
4 * 4 * N < 2**20; retrieve: 4 * d * 16 * N < 2**35), and float64 represents all such integers
exactly whatever the summation order. Everything else is int64 arithmetic.
`FixedPointModel` wraps a bundle with the float model's tracker API.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from converters.graph import float_gate, merge_heads, split_heads
from converters.ir import ACC_BITS, IRBundle, NetworkIR, Node

ACC_MAX = 2 ** (ACC_BITS - 1) - 1
ACC_MIN = -(2 ** (ACC_BITS - 1))
MAX_FAN_IN = 2 ** 22  # keeps conv accumulators below 2**52 (float64-exact)
INT64_GUARD = 62


def rshift(x: torch.Tensor, n: int) -> torch.Tensor:
    """floor((x + 2**(n-1)) / 2**n) for n > 0, x * 2**-n for n <= 0 (int64, overflow-guarded).

    Left shifts first clamp x to ±2**(62+n): anything that large saturates the 24-bit range anyway."""
    if n > 0:
        return (x + (1 << (n - 1))) >> n
    if n == 0:
        return x
    bound = 1 << (INT64_GUARD + n)
    return x.clamp(-bound, bound) << (-n)


@dataclass
class FixedResult:
    """Every node's integer output, saturated-element counts per node, and the dequantized outputs."""

    values: dict[str, torch.Tensor]
    saturated: dict[str, int]
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # graph output name -> real (float64)


def sat(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Clamp to the 24-bit range and count what was clamped."""
    y = x.clamp(ACC_MIN, ACC_MAX)
    return y, int((y != x).sum())


def dequantize(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """Real values (float64) of an integer edge."""
    return x.to(torch.float64) * 2.0 ** -frac_bits


def quantize_real(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """floor(x * 2**F + 0.5) as int64 (not yet saturated)."""
    return torch.floor(x.to(torch.float64) * 2.0 ** frac_bits + 0.5).to(torch.int64)


def int_conv(x: torch.Tensor, node: Node) -> torch.Tensor:
    """Exact integer convolution (float64 on integers, see the module docstring), then shift + bias."""
    a = node.attrs
    w = torch.as_tensor(node.params["weight"], dtype=torch.float64)
    bias = torch.as_tensor(node.params["bias"], dtype=torch.int64)
    fan_in = math.prod(w.shape[-3:])
    if fan_in >= MAX_FAN_IN:
        raise ValueError(f"{node.id}: fan-in {fan_in} too large for an exact float64 convolution")
    xf = x.to(torch.float64)
    if a["per_step"]:
        acc = torch.cat([F.conv2d(xf[t:t + 1], w[t], None, a["stride"], a["padding"], 1, a["groups"])
                         for t in range(x.shape[0])])
        b = bias[:, :, None, None]
    else:
        acc = F.conv2d(xf, w, None, a["stride"], a["padding"], 1, a["groups"])
        b = bias[None, :, None, None]
    return rshift(acc.to(torch.int64), a["shift"]) + b


def int_neuron(x: torch.Tensor, node: Node) -> tuple[torch.Tensor, int]:
    """Multi-spike neuron on integer membrane (F = f_in): spikes 0..4, 12-bit decay, soft reset."""
    a = node.attrs
    f = a["f_in"]
    unit = 1 << (f - 2) if a["reset"] == "normalized" else 1 << f
    v = x[0]
    spikes = [rshift(v, f).clamp(0, a["max_spike"])]
    saturated = 0
    for t in range(1, x.shape[0]):
        v, n = sat(rshift((v - spikes[-1] * unit) * a["decay"][t - 1], 12) + x[t])
        saturated += n
        spikes.append(rshift(v, f).clamp(0, a["max_spike"]))
    return torch.stack(spikes), saturated


def int_upsample(x: torch.Tensor, node: Node) -> torch.Tensor:
    wy = torch.as_tensor(node.params["wy"], dtype=torch.float64)
    wx = torch.as_tensor(node.params["wx"], dtype=torch.float64)
    acc = (wy @ x.to(torch.float64) @ wx.T).to(torch.int64)  # |acc| < (2f)^2 * 2**23: exact
    return rshift(acc, node.attrs["shift"])


def int_retrieve(q: torch.Tensor, mem: torch.Tensor, node: Node) -> torch.Tensor:
    a = node.attrs
    acc = (split_heads(q.to(torch.float64), a["heads"]) @ mem.to(torch.float64)).to(torch.int64)
    return rshift(merge_heads(acc, *q.shape[2:]) * a["multiplier"], a["shift"])


def int_op(node: Node, xs: list[torch.Tensor], in_bits: list[int]) -> tuple[torch.Tensor, int]:
    """Integer output of one node and how many of its elements saturated."""
    op, a = node.op, node.attrs
    if op in ("conv", "conv_dense"):
        return sat(int_conv(xs[0], node))
    if op == "neuron":
        return int_neuron(xs[0], node)
    if op == "add":
        return sat(sum((rshift(x, s) for x, s in zip(xs, a["shifts"])), torch.zeros((), dtype=torch.int64)))
    if op == "add_pos":
        table = torch.as_tensor(node.params["table"], dtype=torch.int64)
        idx = [min(t, table.shape[0] - 1) for t in range(xs[0].shape[0])]
        return sat(rshift(xs[0], a["shift"]) + table[idx])
    if op == "avgpool":
        window = F.avg_pool2d(xs[0].to(torch.float64), a["kernel"], divisor_override=1).to(torch.int64)
        return sat(rshift(window, a["shift"]))
    if op == "upsample":
        return sat(int_upsample(xs[0], node))
    if op == "repeat":
        return xs[0].expand(a["steps"], -1, -1, -1).clone(), 0
    if op == "memory":
        k, v = (split_heads(x.to(torch.float64), a["heads"]) for x in xs)
        return (k.transpose(-1, -2) @ v).to(torch.int64), 0
    if op == "retrieve":
        return sat(int_retrieve(xs[0], xs[1], node))
    if op == "gate":
        return sat(quantize_real(float_gate(dequantize(xs[0], in_bits[0]), node.params, a), node.frac_bits))
    if op == "sigmoid":
        y = dequantize(xs[0], in_bits[0]).sigmoid().clamp(*a["clamp"])
        return sat(quantize_real(y, node.frac_bits))
    raise ValueError(f"no fixed-point semantics for op {op!r}")


def quantize_input(node: Node, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Graph input: images are quantized on the host, memories are already integers."""
    x = x.reshape(node.shape)
    if node.attrs["kind"] == "image":
        return sat(quantize_real(x, node.frac_bits))
    if x.is_floating_point():
        raise TypeError(f"memory input {node.id} must be an integer tensor")
    return x.to(torch.int64), 0


@torch.no_grad()
def run_fixed(graph: NetworkIR, inputs: dict[str, torch.Tensor]) -> FixedResult:
    """Execute `graph` on `inputs` (images real-valued, memories int64); every node's integers."""
    values: dict[str, torch.Tensor] = {}
    saturated: dict[str, int] = {}
    bits = {n.id: n.frac_bits for n in graph.nodes}
    for node in graph.nodes:
        if node.op == "input":
            values[node.id], saturated[node.id] = quantize_input(node, inputs[node.id])
        else:
            values[node.id], saturated[node.id] = int_op(node, [values[i] for i in node.inputs],
                                                         [bits[i] for i in node.inputs])
    outputs = {name: dequantize(values[nid], bits[nid]) for name, nid in graph.outputs.items()}
    return FixedResult(values, saturated, outputs)


def spike_mismatch(graph: NetworkIR, fixed: dict[str, torch.Tensor],
                   real: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per neuron node: fraction of elements whose fixed spike count differs from the float one
    (`real` holds real values s/4, e.g. from `converters.graph.run_float`)."""
    return {n.id: float((fixed[n.id] != torch.round(real[n.id] * 4).to(torch.int64)).double().mean())
            for n in graph.nodes if n.op == "neuron"}


class FixedPointModel(nn.Module):
    """Tracker-compatible model running a bundle's integer graphs (`SpikeTrackTracker` runs it unchanged).

    Memories travel between calls as int64 tensors; head maps come back dequantized (float32)."""

    def __init__(self, bundle: IRBundle, cfg: Any):
        super().__init__()
        self.bundle = bundle
        self.cfg = cfg
        # The tracker reads device and dtype from the first parameter; crops stay float32 on CPU.
        self.register_parameter("_dtype_anchor", nn.Parameter(torch.zeros(()), requires_grad=False))
        self.last_search: FixedResult | None = None

    def encode_templates(self, templates: torch.Tensor) -> list[torch.Tensor]:
        """Templates (T, 1, 3, S, S) -> six int64 memories (T, h, d, dv)."""
        graph = self.bundle.template
        res = run_fixed(graph, {graph.inputs[0]: templates[:, 0]})
        return [res.values[nid] for nid in graph.outputs.values()]

    def track_step(self, search: torch.Tensor, memories: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Search (1, 1, 3, S, S) + memories -> score/size/offset maps (1, C, F, F) float32."""
        graph = self.bundle.search
        names = [i for i in graph.inputs if i != "search"]
        res = run_fixed(graph, {"search": search[:, 0], **dict(zip(names, memories, strict=True))})
        self.last_search = res
        return {k: v.to(torch.float32) for k, v in res.outputs.items()}
