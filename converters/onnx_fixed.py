"""Integer NetworkIR -> ONNX graph, bit exact with `converters.fixed_point.run_fixed` under onnxruntime.

Built node by node with `onnx.helper` (no tracing). Activations are int64 tensors; the contract's
ops (docs/FIXED_POINT.md) map to ONNX as follows:

* `rshift(x, n)`: n > 0 `floor((x + 2^(n-1)) / 2^n)` as `(y - Mod(y, 2^n)) / 2^n` (int64 `Mod`
  takes the divisor's sign, so the division is exact); n < 0 a multiplication (clamped first,
  as the reference); `sat` is `Clip` to the 24-bit range.
* convolutions: onnxruntime has float `Conv` only. A float32 convolution of integers is exact
  when every partial sum stays below 2^24, i.e. max|x| * max_o sum|w_o| < 2^24. Spike inputs
  (0..4) satisfy it; wider inputs (the stem's image integers) are split into base-2^b limbs
  small enough for it, each convolved exactly and recombined in int64.
* memories and retrievals: int64 `MatMul` (onnxruntime implements it); the bilinear upsample
  as two int64 `MatMul`s with the integer weights; average pooling as an int64 window sum.
* host ops in float64 (`sigmoid`): the same formula on dequantized integers. The t3 channel gate
  is not exported (`UnsupportedOp`).

Graph interface equals the float export's (`converters.onnx_export`): inputs `templates`
(T, 1, 3, S, S) / `search` (1, 1, 3, S, S) float32 and `memory0..5` (T, 1, h, d, dv) int64;
outputs the int64 memories or the maps (1, C, F, F) float32 (dequantized: exact, |int| < 2^24).
With `probes`, every IR node's integer output is also a graph output named by the node id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.ir import ACC_BITS, DECAY_BITS, SPIKE_FRAC_BITS, NetworkIR, Node

ACC_MIN, ACC_MAX = -(2 ** (ACC_BITS - 1)), 2 ** (ACC_BITS - 1) - 1
FLOAT_EXACT = 2 ** 24  # integers below this are exact in float32 (and every partial sum must be)
INT64_GUARD = 62
NATIVE_OPSET = 18


class UnsupportedOp(ValueError):
    """An IR op this exporter does not translate."""


@dataclass
class OnnxGraphBuilder:
    """Collects nodes and initializers; every helper returns the name of its output tensor."""

    name: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    counter: int = 0

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, value: Any, dtype: Any = np.int64, hint: str = "c") -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        out = out or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.fresh(f"n_{op_type}"), **attrs))
        return out

    # integer arithmetic of the contract -----------------------------------------------------
    def sat(self, x: str, out: str | None = None) -> str:
        return self.op("Clip", [x, self.const(ACC_MIN), self.const(ACC_MAX)], out)

    def clamp(self, x: str, lo: int, hi: int) -> str:
        return self.op("Clip", [x, self.const(lo), self.const(hi)])

    def floor_div(self, x: str, divisor: int) -> str:
        """floor(x / d) for int64 x and d > 0, exact."""
        d = self.const(divisor)
        return self.op("Div", [self.op("Sub", [x, self.op("Mod", [x, d], fmod=0)]), d])

    def rshift(self, x: str, n: int) -> str:
        if n > 0:
            return self.floor_div(self.op("Add", [x, self.const(1 << (n - 1))]), 1 << n)
        if n == 0:
            return x
        bound = 1 << (INT64_GUARD + n)
        return self.op("Mul", [self.clamp(x, -bound, bound), self.const(1 << (-n))])

    def add_all(self, terms: list[str]) -> str:
        """Sum of int64 tensors (ONNX `Sum` is float-only), broadcasting."""
        acc = terms[0]
        for term in terms[1:]:
            acc = self.op("Add", [acc, term])
        return acc

    def slice_t(self, x: str, t: int) -> str:
        """Step t of a time-first tensor, keeping the axis."""
        return self.op("Slice", [x, self.const([t]), self.const([t + 1]), self.const([0])])

    def reshape(self, x: str, shape: tuple[int, ...], out: str | None = None) -> str:
        return self.op("Reshape", [x, self.const(list(shape))], out)


def conv_l1(weight: np.ndarray) -> int:
    """max over output channels of sum |w| (integer weights)."""
    return int(np.abs(weight).reshape(weight.shape[0], -1).sum(1).max()) if weight.size else 0


def limb_bits(l1: int) -> int:
    """Largest b with (2^b - 1) * l1 < 2^24: limbs in [0, 2^b - 1] convolve exactly in float32."""
    bits = int(math.floor(math.log2((FLOAT_EXACT - 1) / max(l1, 1) + 1)))
    if bits < 1:
        raise UnsupportedOp(f"weights too large for an exact float32 convolution (sum |w| = {l1})")
    return bits


def exact_conv(b: OnnxGraphBuilder, x: str, weight: np.ndarray, attrs: dict, max_input: int) -> str:
    """int64 accumulator of conv(x, w), no bias, |x| <= max_input: float32 convolutions of base-2^b
    limbs of x (low limbs Mod 2^b, the rest floor-divided), each exact, recombined in int64."""
    kh, kw = attrs["kernel"]
    p = attrs["padding"]
    w = b.const(weight, np.float32, "w")
    conv_attrs = dict(kernel_shape=[kh, kw], strides=[attrs["stride"]] * 2, pads=[p, p, p, p],
                      group=attrs["groups"])

    def conv(limb: str, scale: int) -> str:
        y = b.op("Cast", [b.op("Conv", [b.op("Cast", [limb], to=TensorProto.FLOAT), w], **conv_attrs)],
                 to=TensorProto.INT64)
        return y if scale == 1 else b.op("Mul", [y, b.const(scale)])

    l1 = conv_l1(weight)
    bits = limb_bits(l1)
    terms, rest, bound, scale = [], x, max_input, 1
    while bound * l1 >= FLOAT_EXACT:
        terms.append(conv(b.op("Mod", [rest, b.const(1 << bits)], fmod=0), scale))
        rest, bound, scale = b.floor_div(rest, 1 << bits), -(-bound // (1 << bits)), scale << bits
    terms.append(conv(rest, scale))
    return b.add_all(terms)


def lower_conv(b: OnnxGraphBuilder, node: Node, x: str) -> str:
    a = node.attrs
    max_input = 4 if node.op == "conv" else -ACC_MIN
    weight, bias = node.params["weight"], node.params["bias"]
    if a["per_step"]:
        steps = [b.op("Add", [b.rshift(exact_conv(b, b.slice_t(x, t), weight[t], a, max_input), a["shift"]),
                              b.const(bias[t].reshape(1, -1, 1, 1))]) for t in range(node.shape[0])]
        y = steps[0] if len(steps) == 1 else b.op("Concat", steps, axis=0)
    else:
        y = b.op("Add", [b.rshift(exact_conv(b, x, weight, a, max_input), a["shift"]),
                         b.const(bias.reshape(1, -1, 1, 1))])
    return b.sat(y, node.id)


def lower_neuron(b: OnnxGraphBuilder, node: Node, x: str) -> str:
    """The contract's neuron, unrolled over T: spikes clamp(rshift(v, F), 0, D), decay and soft reset."""
    a = node.attrs
    f = a["f_in"]
    unit = 1 << (f - SPIKE_FRAC_BITS) if a["reset"] == "normalized" else 1 << f
    v = b.slice_t(x, 0)
    spikes = [b.clamp(b.rshift(v, f), 0, a["max_spike"])]
    for t in range(1, node.shape[0]):
        reset = b.op("Sub", [v, b.op("Mul", [spikes[-1], b.const(unit)])])
        decayed = b.rshift(b.op("Mul", [reset, b.const(a["decay"][t - 1])]), DECAY_BITS)
        v = b.sat(b.op("Add", [decayed, b.slice_t(x, t)]))
        spikes.append(b.clamp(b.rshift(v, f), 0, a["max_spike"]))
    return b.op("Identity", spikes, node.id) if len(spikes) == 1 else b.op("Concat", spikes, node.id, axis=0)


def split_heads(b: OnnxGraphBuilder, x: str, shape: tuple[int, ...], heads: int) -> str:
    """(T, C, H, W) -> (T, heads, N, C/heads) as `converters.graph.split_heads`."""
    t, c, h, w = shape
    return b.op("Transpose", [b.reshape(x, (t, heads, c // heads, h * w))], perm=[0, 1, 3, 2])


def lower_memory(b: OnnxGraphBuilder, node: Node, xs: list[str], shapes: list[tuple[int, ...]]) -> str:
    heads = node.attrs["heads"]
    k = b.op("Transpose", [split_heads(b, xs[0], shapes[0], heads)], perm=[0, 1, 3, 2])
    return b.op("MatMul", [k, split_heads(b, xs[1], shapes[1], heads)], node.id)


def lower_retrieve(b: OnnxGraphBuilder, node: Node, xs: list[str], shapes: list[tuple[int, ...]]) -> str:
    a = node.attrs
    t, _, h, w = shapes[0]
    acc = b.op("MatMul", [split_heads(b, xs[0], shapes[0], a["heads"]), xs[1]])  # (T, heads, N, dv)
    acc = b.reshape(b.op("Transpose", [acc], perm=[0, 1, 3, 2]), node.shape)
    return b.sat(b.rshift(b.op("Mul", [acc, b.const(a["multiplier"])]), a["shift"]), node.id)


def lower_sigmoid(b: OnnxGraphBuilder, node: Node, x: str, f_in: int) -> str:
    """Host: floor(clamp(sigmoid(x 2^-F_in), lo, hi) 2^F + 0.5) in float64, saturated."""
    lo, hi = node.attrs["clamp"]
    y = b.op("Mul", [b.op("Cast", [x], to=TensorProto.DOUBLE), b.const(2.0 ** -f_in, np.float64)])
    y = b.op("Clip", [b.op("Sigmoid", [y]), b.const(lo, np.float64), b.const(hi, np.float64)])
    return b.sat(quantize_double(b, y, node.frac_bits), node.id)


def quantize_double(b: OnnxGraphBuilder, y: str, frac_bits: int) -> str:
    """floor(y 2^F + 0.5) of a float64 tensor, as int64."""
    y = b.op("Add", [b.op("Mul", [y, b.const(2.0 ** frac_bits, np.float64)]), b.const(0.5, np.float64)])
    return b.op("Cast", [b.op("Floor", [y])], to=TensorProto.INT64)


def lower_node(b: OnnxGraphBuilder, node: Node, xs: list[str], ins: list[Node]) -> str:
    """ONNX ops of one IR node; the output tensor is named after the node id."""
    a, op = node.attrs, node.op
    if op in ("conv", "conv_dense"):
        return lower_conv(b, node, xs[0])
    if op == "neuron":
        return lower_neuron(b, node, xs[0])
    if op == "add":
        terms = [b.rshift(x, s) for x, s in zip(xs, a["shifts"])]
        return b.sat(b.add_all(terms), node.id)
    if op == "add_pos":
        table = node.params["table"]
        steps = [min(t, table.shape[0] - 1) for t in range(node.shape[0])]
        return b.sat(b.op("Add", [b.rshift(xs[0], a["shift"]), b.const(table[steps])]), node.id)
    if op == "avgpool":
        t, c, h, w = ins[0].shape
        k = a["kernel"]
        window = b.op("ReduceSum", [b.reshape(xs[0], (t, c, h // k, k, w // k, k)), b.const([3, 5])], keepdims=0)
        return b.sat(b.rshift(window, a["shift"]), node.id)
    if op == "upsample":
        rows = b.op("MatMul", [b.const(node.params["wy"]), xs[0]])
        both = b.op("MatMul", [rows, b.const(node.params["wx"].T)])
        return b.sat(b.rshift(both, a["shift"]), node.id)
    if op == "repeat":
        return b.op("Expand", [xs[0], b.const(list(node.shape))], node.id)
    if op == "memory":
        return lower_memory(b, node, xs, [i.shape for i in ins])
    if op == "retrieve":
        return lower_retrieve(b, node, xs, [i.shape for i in ins])
    if op == "sigmoid":
        return lower_sigmoid(b, node, xs[0], ins[0].frac_bits)
    raise UnsupportedOp(f"{node.id}: op {op!r} has no fixed-point ONNX lowering (the t3 channel gate runs on the host)")


def batched(shape: tuple[int, ...]) -> tuple[int, ...]:
    """IR shape (T, ...) -> the model's (T, 1, ...) with the batch axis."""
    return (shape[0], 1, *shape[1:])


def lower_input(b: OnnxGraphBuilder, node: Node) -> tuple[str, onnx.ValueInfoProto]:
    """Graph input in the float export's layout, converted to the IR's integers."""
    if node.attrs["kind"] == "image":
        info = helper.make_tensor_value_info(node.id, TensorProto.FLOAT, batched(node.shape))
        x = b.op("Cast", [b.reshape(node.id, node.shape)], to=TensorProto.DOUBLE)
        return b.sat(quantize_double(b, x, node.frac_bits), f"{node.id}:int"), info
    info = helper.make_tensor_value_info(node.id, TensorProto.INT64, batched(node.shape))
    return b.reshape(node.id, node.shape, f"{node.id}:int"), info


def graph_proto(graph: NetworkIR, probes: bool = False) -> onnx.GraphProto:
    """The ONNX graph of an integer IR graph (outputs: int64 memories or float32 dequantized maps)."""
    b = OnnxGraphBuilder(graph.name)
    names: dict[str, str] = {}
    index = graph.index()
    inputs = []
    for node in graph.nodes:
        if node.op == "input":
            names[node.id], info = lower_input(b, node)
            inputs.append(info)
        else:
            names[node.id] = lower_node(b, node, [names[i] for i in node.inputs], [index[i] for i in node.inputs])
    outputs = []
    for name, nid in graph.outputs.items():
        node = index[nid]
        if node.op == "memory":
            b.reshape(names[nid], batched(node.shape), name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, batched(node.shape)))
        else:
            real = b.op("Cast", [names[nid]], to=TensorProto.FLOAT)
            b.op("Mul", [real, b.const(2.0 ** -node.frac_bits, np.float32)], name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, node.shape))
    if probes:
        outputs += [helper.make_tensor_value_info(names[n.id], TensorProto.INT64, n.shape)
                    for n in graph.nodes if n.op != "input"]
    return helper.make_graph(b.nodes, graph.name, inputs, outputs, b.initializers)


def fixed_point_model(graph: NetworkIR, probes: bool = False) -> onnx.ModelProto:
    """A checked ONNX model (opset 18) of an integer IR graph."""
    model = helper.make_model(graph_proto(graph, probes), opset_imports=[helper.make_opsetid("", NATIVE_OPSET)],
                              producer_name="spiketrack")
    onnx.checker.check_model(model, full_check=True)
    return model
