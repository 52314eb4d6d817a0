"""Evaluate NetworkIR nodes with the integer kernels (docs/FIXED_POINT.md, converters/ir.py docstring).

Pure numpy, no Lava: the fused Lava process models call `evaluate_nodes` on their sub-graph, and
the same per-node statistics feed the counts JSON. Every node returns its int64 output and one
row of raw statistics (`STAT_FIELDS`, summed per frame):

* `spikes`         sum of output spike values (neuron nodes);
* `synops`         sum of input spike value x actual fan-out (convs on spikes: border- and
                   stride-exact, `Cout/groups` outputs per window position);
* `neuron_updates` membrane updates (neuron output elements x timesteps);
* `attention_ops`  event-driven accumulates of activation-activation products: for `memory`
                   sum(k) * dv, for `retrieve` sum(q) * dv (each spike adds one dv-row);
* `host_ops`       elementwise/resampling/host arithmetic: output elements x summed terms;
* `dense_macs`     multiply-accumulates on non-spike input (`conv_dense`, the stem);
* `saturated`      values clamped to the 24-bit range.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from deploy import kernels as K

STAT_FIELDS = ("spikes", "synops", "neuron_updates", "attention_ops", "host_ops", "dense_macs", "saturated")
SPIKE_INPUT_MAX = K.MAX_SPIKE
DENSE_INPUT_MAX = -K.ACT_MIN  # |x| <= 2^23 after saturation


def _stats(**values: int) -> np.ndarray:
    row = np.zeros(len(STAT_FIELDS), dtype=np.int64)
    for name, value in values.items():
        row[STAT_FIELDS.index(name)] = int(value)
    return row


def _sat(y: np.ndarray, **values: int) -> tuple[np.ndarray, np.ndarray]:
    out, clipped = K.saturate(y)
    return out, _stats(saturated=clipped, **values)


def eval_input(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Graph input: an image is quantized on the host `sat(floor(x 2^F + 0.5))`; a memory passes through."""
    x = np.asarray(xs[0]).reshape(node.shape)
    if node.attrs.get("kind") == "image":
        return _sat(K.quantize(x, node.frac_bits), host_ops=x.size)
    return x.astype(np.int64), _stats()


def eval_conv(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`sat(rshift(conv(x, w), shift) + bias)`; per-step weights when attrs['per_step']."""
    a, x = node.attrs, np.asarray(xs[0], dtype=np.int64)
    weight, bias = node.params["weight"], node.params["bias"]
    dense = node.op == "conv_dense"
    max_in = DENSE_INPUT_MAX if dense else SPIKE_INPUT_MAX
    kh, kw = a["kernel"]
    if kh != kw:
        raise ValueError(f"{node.id}: only square kernels are supported, got {kh}x{kw}")
    if a.get("per_step"):
        acc = np.concatenate([K.conv_accumulate(x[t:t + 1], weight[t], a["stride"], a["padding"], a["groups"], max_in)
                              for t in range(x.shape[0])])
        y = np.concatenate([K.requantize(acc[t:t + 1], a["shift"], bias[t]) for t in range(x.shape[0])])
    else:
        acc = K.conv_accumulate(x, weight, a["stride"], a["padding"], a["groups"], max_in)
        y = K.requantize(acc, a["shift"], bias)
    cout_per_group = node.shape[1] // a["groups"]
    if dense:
        cin_per_group = weight.shape[-3]
        return _sat(y, dense_macs=y.size * cin_per_group * kh * kw)
    return _sat(y, synops=cout_per_group * K.window_input_sums(x, kh, a["stride"], a["padding"]))


def eval_neuron(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Multi-spike neuron over the node's T steps."""
    a = node.attrs
    spikes, clipped = K.neuron(xs[0], a["f_in"], a.get("decay", []), a.get("reset", "normalized"))
    return spikes, _stats(spikes=spikes.sum(), neuron_updates=spikes.size, saturated=clipped)


def eval_add(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`sat(sum rshift(x_i, shifts[i]))`, T = 1 inputs broadcast over T."""
    y = K.add(list(xs), node.attrs["shifts"])
    return _sat(y, host_ops=y.size * (len(xs) - 1))


def eval_add_pos(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`sat(rshift(x_t, shift) + table[min(t, n-1)])`."""
    table = node.params["table"]
    steps = np.minimum(np.arange(xs[0].shape[0]), table.shape[0] - 1)
    y = K.rshift(xs[0], node.attrs["shift"]) + table[steps]
    return _sat(y, host_ops=y.size)


def eval_avgpool(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`sat(rshift(window sum, shift))`."""
    y = K.avgpool(xs[0], node.attrs["kernel"], node.attrs["shift"])
    return _sat(y, host_ops=np.asarray(xs[0]).size)


def eval_upsample(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`sat(rshift(wy @ x @ wx^T, shift))`."""
    y = K.upsample(xs[0], node.params["wy"], node.params["wx"], node.attrs["shift"])
    return _sat(y, host_ops=y.size * 4)


def eval_repeat(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The single step repeated `steps` times."""
    return np.repeat(np.asarray(xs[0], dtype=np.int64), node.attrs["steps"], axis=0), _stats()


def eval_memory(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`M = k^T v` per step and head (exact)."""
    k, v = xs
    heads = node.attrs["heads"]
    dv = v.shape[1] // heads
    return K.kv_memory(k, v, heads), _stats(attention_ops=int(np.sum(k)) * dv)


def eval_retrieve(node: Any, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`sat(rshift((q @ M) * m, n))` per step and head."""
    q, memory = xs
    a = node.attrs
    acc = K.retrieve_accumulate(q, memory, a["heads"])
    dv = memory.shape[-1]
    return _sat(K.scale_shift(acc, a["multiplier"], a["shift"]), attention_ops=int(np.sum(q)) * dv)


def eval_gate(node: Any, xs: Sequence[np.ndarray], f_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Host channel gate in float64 on `o 2^-F_in`, requantized `sat(floor(y 2^F + 0.5))`."""
    p, a = node.params, node.attrs
    o = K.dequantize(xs[0], f_in)
    y = K.channel_gate(o, p["w1"], p["b1"], p["w2"], p["b2"], a["neuron_decay"], a.get("reset", "normalized"),
                       a.get("max_spike", K.MAX_SPIKE))
    t, cv = o.shape[:2]
    tokens = o[0, 0].size
    ops = t * cv * (tokens * (tokens // 2) + tokens // 2 + 2 * tokens)  # two conv1d, weighted sum
    return _sat(K.quantize(y, node.frac_bits), host_ops=ops)


def eval_sigmoid(node: Any, xs: Sequence[np.ndarray], f_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Host `sat(floor(clamp(sigmoid(x 2^-F_in), lo, hi) 2^F + 0.5))`."""
    lo, hi = node.attrs["clamp"]
    y = np.clip(K.sigmoid(K.dequantize(xs[0], f_in)), lo, hi)
    return _sat(K.quantize(y, node.frac_bits), host_ops=y.size)


_EVALUATORS: dict[str, Callable[[Any, Sequence[np.ndarray]], tuple[np.ndarray, np.ndarray]]] = {
    "input": eval_input, "conv": eval_conv, "conv_dense": eval_conv, "neuron": eval_neuron, "add": eval_add,
    "add_pos": eval_add_pos, "avgpool": eval_avgpool, "upsample": eval_upsample, "repeat": eval_repeat,
    "memory": eval_memory, "retrieve": eval_retrieve,
}
_HOST_FLOAT = {"gate": eval_gate, "sigmoid": eval_sigmoid}
SUPPORTED_OPS = frozenset(_EVALUATORS) | frozenset(_HOST_FLOAT)


def evaluate_node(node: Any, xs: Sequence[np.ndarray], input_frac_bits: Sequence[int | None] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Output (int64, `node.shape`) and stats row of one node given its input arrays (and their F)."""
    if node.op in _HOST_FLOAT:
        return _HOST_FLOAT[node.op](node, xs, input_frac_bits[0])
    if node.op not in _EVALUATORS:
        raise ValueError(f"{node.id}: no integer semantics for op {node.op!r}")
    return _EVALUATORS[node.op](node, xs)


def evaluate_nodes(nodes: Sequence[Any], values: dict[str, np.ndarray],
                   frac_bits: dict[str, int | None]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Evaluate `nodes` in order. `values` holds every external input by node id (an image input
    node finds its raw data under its own id); `frac_bits` maps external ids to their F.
    Returns the nodes' outputs by id and a stats matrix (len(nodes), len(STAT_FIELDS))."""
    outputs: dict[str, np.ndarray] = {}
    fbits = dict(frac_bits)
    stats = np.zeros((len(nodes), len(STAT_FIELDS)), dtype=np.int64)
    for i, node in enumerate(nodes):
        if node.op == "input":
            xs = [values[node.id]]
        else:
            xs = [outputs[j] if j in outputs else values[j] for j in node.inputs]
        y, stats[i] = evaluate_node(node, xs, [fbits.get(j) for j in node.inputs])
        if tuple(y.shape) != tuple(node.shape):
            raise ValueError(f"{node.id}: output shape {tuple(y.shape)} differs from the IR's {tuple(node.shape)}")
        outputs[node.id] = y
        fbits[node.id] = node.frac_bits
    return outputs, stats
