"""Binary-spike expansion of the multi-spike network (SDT v3 style): spikes 0..4 -> 4 binary sub-steps.

Every multi-spike neuron becomes an integrate-and-fire neuron that fires during a window of
`SUBSTEPS` = 4 virtual sub-steps per time step: its membrane v (the same value the multi-spike
neuron quantizes) is compared with a threshold of half a spike unit, and every binary spike
subtracts one unit (soft reset). Spike j fires iff v >= (j + 1/2) units, so the train is
front-loaded and holds exactly s = round(clamp(v, 0, 4)) spikes: the 4-step window is the clamp,
and no spike fires below zero.

Rounding ties (v exactly k + 1/2 units) follow the graph's rule:
* fixed point (docs/FIXED_POINT.md): round half up, so every sub-step compares `>=` (`fire_half_up`);
* float (torch.round, half to even): the threshold toggles with every spike the window emits:
  `> 1/2` while an even number of spikes has fired, `>= 1/2` after an odd number
  (`fire_half_even`), so the (k+1)-th spike fires on a tie iff k + 1 is even. After a miss nothing
  changes (no reset, same parity), so no later sub-step fires. The residual v - k is exact in
  binary floating point (it only decrements values >= 1/2 by 1), so every comparison sees the
  exact membrane. (Toggling by sub-step index instead would fire late on a tie: v = 0.5 misses
  `> 1/2` at sub-step 0 and would pass `>= 1/2` at sub-step 1.)

Every layer fed by spikes (conv, the memory k^T v, the retrieval q @ M) receives the binary
spikes one sub-step at a time and accumulates: `acc = sum_j W z_j = W s`. In the integer graph this
is exact, so the expanded network reproduces `converters.fixed_point.run_fixed` bit for bit. In
the float graph the sub-step sums are float64 sums in another order than `W s`: equal up to
float64 rounding (memory and retrieval sums are exact; convolutions may differ in the last bit).
The host gate reads the spike count (a counter of the binary spikes).

Cost: time steps x4; the number of binary events is the sum of the spike values (a graded event
carries a value 1..4); synaptic operations are binary events x fan-out, plain accumulates instead
of weight x value products (`binary_costs`, `binary_counts_record`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from converters.fixed_point import int_op, quantize_input, rshift, sat
from converters.graph import float_op, merge_heads, split_heads
from converters.ir import SPIKE_FRAC_BITS, DECAY_BITS, NetworkIR, Node
from spiketrack.profiler.counting import fan_out, layer_kind, param_bytes
from deploy.kernels import window_input_sums
from spiketrack.profiler.counts import CountsRecord, LayerCounts

SUBSTEPS = 4
SPIKE_CONSUMERS = ("conv", "memory", "retrieve", "gate")
DOMAINS = ("fixed", "float")

# (membrane of one time step, the neuron's attrs) -> binary trains (SUBSTEPS, *shape), bool
FireFn = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]


def fire_half_up(v: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """Integer IF over the window: spike iff residual >= half a unit (2**(F-1)), reset by one unit (2**F)."""
    unit, half = 1 << frac_bits, 1 << (frac_bits - 1)
    trains = []
    for _ in range(SUBSTEPS):
        z = v >= half
        trains.append(z)
        v = v - z.to(v.dtype) * unit
    return torch.stack(trains)


def fire_half_even(m: torch.Tensor) -> torch.Tensor:
    """Float IF over the window: threshold 1/2, strict while the window's spike count is even,
    inclusive while it is odd; reset by 1. Spike counts equal torch.round(clamp(m, 0, 4))."""
    odd = torch.zeros_like(m, dtype=torch.bool)
    trains = []
    for _ in range(SUBSTEPS):
        z = torch.where(odd, m >= 0.5, m > 0.5)
        trains.append(z)
        m = m - z.to(m.dtype)
        odd = odd ^ z
    return torch.stack(trains)


@dataclass
class BinaryRun:
    """Outputs of every node (neurons: their spike values, as the reference graph gives them),
    the binary trains (T, SUBSTEPS, ...) and the membrane each window fired from (T, ...)."""

    values: dict[str, torch.Tensor]
    trains: dict[str, torch.Tensor] = field(default_factory=dict)
    membranes: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


def spike_counts(trains: torch.Tensor) -> torch.Tensor:
    """Integer spike counts (T, ...) of binary trains (T, SUBSTEPS, ...)."""
    return trains.sum(1, dtype=torch.int64)


def neuron_fixed(x: torch.Tensor, a: dict[str, Any], fire: FireFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer neuron node with binary output: the contract's membrane recursion, IF window per step."""
    f = a["f_in"]
    unit = 1 << (f - SPIKE_FRAC_BITS) if a["reset"] == "normalized" else 1 << f
    v = x[0]
    membranes, trains = [v], [fire(v, a)]
    for t in range(1, x.shape[0]):
        s = trains[-1].sum(0, dtype=torch.int64)
        v, _ = sat(rshift((v - s * unit) * a["decay"][t - 1], DECAY_BITS) + x[t])
        membranes.append(v)
        trains.append(fire(v, a))
    return torch.stack(trains), torch.stack(membranes)


def neuron_float(x: torch.Tensor, a: dict[str, Any], fire: FireFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Float neuron node with binary output: the float model's recursion (reset by s/D or s)."""
    norm = float(a["max_spike"])
    m = x[0]
    membranes, trains = [m], [fire(m, a)]
    for t in range(1, x.shape[0]):
        out = trains[-1].sum(0).to(x.dtype) / norm
        m = (m - (out if a["reset"] == "normalized" else out * norm)) * a["decay_float"][t - 1] + x[t]
        membranes.append(m)
        trains.append(fire(m, a))
    return torch.stack(trains), torch.stack(membranes)


def exact_dtype(w: torch.Tensor) -> torch.dtype:
    """float32 when every partial sum of binary inputs stays below 2**24 (exact), else float64."""
    if w.is_floating_point() and not torch.equal(w, w.round()):
        return torch.float64
    return torch.float32 if float(w.abs().flatten(1).sum(1).max()) < 2 ** 24 else torch.float64


def substep_conv(trains: torch.Tensor, node: Node) -> torch.Tensor:
    """sum_j conv(z_j, W) over the window, no bias, float64 result; the sub-steps run as one batch
    (integer weights: exact, see `exact_dtype`)."""
    a = node.attrs
    w = torch.as_tensor(node.params["weight"])
    dtype = exact_dtype(w.flatten(0, 1) if a["per_step"] else w)
    w = w.to(dtype)

    def conv(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # z (SUBSTEPS, C, H, W)
        return F.conv2d(z.to(dtype), weight, None, a["stride"], a["padding"], 1, a["groups"])

    steps = [conv(trains[t], w[t] if a["per_step"] else w) for t in range(trains.shape[0])]
    return torch.stack(steps).to(torch.float64).sum(1)


def bias_view(node: Node, like: torch.Tensor) -> torch.Tensor:
    """The conv bias broadcastable to (T, C, H, W) (per-step biases keep their T axis)."""
    bias = torch.as_tensor(node.params["bias"], dtype=like.dtype)
    return bias[:, :, None, None] if node.attrs["per_step"] else bias[None, :, None, None]


def substep_memory(k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """k^T v from binary trains: coincidences of every (k sub-step, v sub-step) pair, float64 (exact)."""
    ks = [split_heads(k[:, j].to(torch.float64), heads) for j in range(SUBSTEPS)]
    vs = [split_heads(v[:, j].to(torch.float64), heads) for j in range(SUBSTEPS)]
    return sum(kj.transpose(-1, -2) @ vi for kj in ks for vi in vs)


def substep_retrieve(q: torch.Tensor, memory: torch.Tensor, heads: int) -> torch.Tensor:
    """sum_j z_j @ M (T, heads*dv, H, W), float64 (exact for integer memories)."""
    h, w = q.shape[-2:]
    mem = memory.to(torch.float64)
    return sum(merge_heads(split_heads(q[:, j].to(torch.float64), heads) @ mem, h, w) for j in range(SUBSTEPS))


def synaptic_fixed(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    """Integer output of a spike-fed node from binary trains (same requantization as the contract)."""
    a = node.attrs
    if node.op == "conv":
        acc = substep_conv(xs[0], node).to(torch.int64)
        return sat(rshift(acc, a["shift"]) + bias_view(node, acc))[0]
    if node.op == "memory":
        return substep_memory(xs[0], xs[1], a["heads"]).to(torch.int64)
    acc = substep_retrieve(xs[0], xs[1], a["heads"]).to(torch.int64)
    return sat(rshift(acc * a["multiplier"], a["shift"]))[0]


def synaptic_float(node: Node, xs: list[torch.Tensor], norm: float) -> torch.Tensor:
    """Real output of a spike-fed node from binary trains (spike value 1/norm per binary spike)."""
    a = node.attrs
    if node.op == "conv":
        acc = substep_conv(xs[0], node) / norm
        return acc + bias_view(node, acc)
    if node.op == "memory":
        return substep_memory(xs[0], xs[1], a["heads"]) / norm ** 2
    d = xs[1].shape[2]
    return substep_retrieve(xs[0], xs[1], a["heads"]) / norm * (2.0 / math.sqrt(d))


def check_spike_consumer(node: Node, is_train: list[bool]) -> None:
    """Binary trains feed only synaptic ops (and the host gate, which counts them); synaptic ops
    (conv, memory, retrieve) must get trains on their spike inputs."""
    if any(is_train) and node.op not in SPIKE_CONSUMERS:
        raise ValueError(f"{node.id}: op {node.op!r} cannot take binary spike trains")
    wanted = {"conv": 1, "memory": 2, "retrieve": 1}.get(node.op, 0)
    if not all(is_train[:wanted]):
        raise ValueError(f"{node.id}: op {node.op!r} needs binary spike trains as input")


@torch.no_grad()
def run_binary(graph: NetworkIR, inputs: dict[str, torch.Tensor], domain: str = "fixed",
               fire: FireFn | None = None) -> BinaryRun:
    """Execute the binary-expanded `graph`: integer IR (`domain='fixed'`, exact vs `run_fixed`) or
    the float graph of `converters.graph` (`'float'`, float64, vs `run_float`). `fire` replaces the
    IF window (e.g. by another simulator's neuron); default `fire_half_up` / `fire_half_even`."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    run = BinaryRun({})
    bits = {n.id: n.frac_bits for n in graph.nodes}
    for node in graph.nodes:
        if node.op == "input":
            x = inputs[node.id]
            run.values[node.id] = (quantize_input(node, x)[0] if domain == "fixed"
                                   else x.to(torch.float64).reshape(node.shape))
            continue
        xs = [run.trains.get(i, run.values[i]) for i in node.inputs]
        is_train = [i in run.trains for i in node.inputs]
        check_spike_consumer(node, is_train)
        if node.op == "neuron":
            run.values[node.id] = run_neuron(node, xs[0], domain, fire, run)
        elif node.op in ("conv", "memory", "retrieve"):
            run.values[node.id] = (synaptic_fixed(node, xs) if domain == "fixed"
                                   else synaptic_float(node, xs, float(SUBSTEPS)))
        else:
            graded = [run.values[i] for i in node.inputs]  # the gate (host) reads spike counts
            run.values[node.id] = (int_op(node, graded, [bits[i] for i in node.inputs])[0] if domain == "fixed"
                                   else float_op(node, graded))
    run.outputs = {name: run.values[nid] for name, nid in graph.outputs.items()}
    return run


def run_neuron(node: Node, x: torch.Tensor, domain: str, fire: FireFn | None, run: BinaryRun) -> torch.Tensor:
    """Fire one neuron node; records trains and membranes in `run`; returns its spike values."""
    a = node.attrs
    if a["max_spike"] != SUBSTEPS:
        raise ValueError(f"{node.id}: binary expansion needs max_spike == {SUBSTEPS}, got {a['max_spike']}")
    if domain == "fixed":
        trains, membranes = neuron_fixed(x, a, fire or (lambda v, attrs: fire_half_up(v, attrs["f_in"])))
    else:
        trains, membranes = neuron_float(x, a, fire or (lambda m, _attrs: fire_half_even(m)))
    run.trains[node.id], run.membranes[node.id] = trains, membranes
    counts = spike_counts(trains)
    return counts if domain == "fixed" else counts.to(torch.float64) / float(a["max_spike"])


# ----------------------------------------------------------------------------------------------
# cost of the expansion

@dataclass(frozen=True)
class BinaryCost:
    """One spiking or spike-fed layer, graded network vs binary expansion (totals over the run)."""

    layer_id: str
    op: str
    timesteps: int  # graded time steps; the binary network runs SUBSTEPS x as many
    graded_events: int  # nonzero graded spikes emitted (neurons) / received (consumers)
    binary_events: int  # binary spikes = sum of spike values
    graded_synops: int  # graded events x fan-out: weight x value products
    binary_synops: int  # binary events x fan-out: accumulates


def conv_fanout_sum(x: np.ndarray, node: Node) -> int:
    """sum over input values x of (value x actual fan-out) of a conv (border- and stride-exact)."""
    a = node.attrs
    return node.shape[1] // a["groups"] * window_input_sums(x, a["kernel"][0], a["stride"], a["padding"])


def layer_cost(node: Node, run: BinaryRun) -> BinaryCost | None:
    """Graded vs binary events and synaptic operations of a neuron or spike-fed node (None otherwise)."""
    t = node.shape[0]
    if node.op == "neuron":
        s = spike_counts(run.trains[node.id]).numpy()
        return BinaryCost(node.id, "neuron", t, int(np.count_nonzero(s)), int(s.sum()), 0, 0)
    if node.op not in ("conv", "memory", "retrieve") or node.inputs[0] not in run.trains:
        return None
    s = spike_counts(run.trains[node.inputs[0]]).numpy()
    nz = (s > 0).astype(np.int64)
    if node.op == "conv":
        graded, binary = conv_fanout_sum(nz, node), conv_fanout_sum(s, node)
    else:  # each q or k spike adds one dv-row of the memory / of v
        dv = node.shape[-1] if node.op == "memory" else node.shape[1] // node.attrs["heads"]
        graded, binary = int(nz.sum()) * dv, int(s.sum()) * dv
    return BinaryCost(node.id, node.op, t, int(nz.sum()), int(s.sum()), graded, binary)


def binary_costs(graph: NetworkIR, run: BinaryRun) -> list[BinaryCost]:
    """Per-layer graded vs binary costs of one binary run, in graph order."""
    costs = (layer_cost(n, run) for n in graph.nodes)
    return [c for c in costs if c is not None]


def binary_layer_counts(node: Node, run: BinaryRun, index: dict[str, Node]) -> LayerCounts:
    """LayerCounts of a layer of the binary network (time steps are sub-steps)."""
    steps = node.shape[0] * SUBSTEPS
    spike_in = node.op in ("conv", "memory", "retrieve")
    fields: dict[str, int] = {}
    if node.op == "neuron":
        neurons = math.prod(node.shape[1:])
        fields = {"neurons": neurons, "spikes": int(spike_counts(run.trains[node.id]).sum()),
                  "neuron_updates": neurons * steps}
    elif node.op == "conv":
        fields = {"synops": conv_fanout_sum(spike_counts(run.trains[node.inputs[0]]).numpy(), node)}
    elif spike_in:
        cost = layer_cost(node, run)
        fields = {"attention_ops": cost.binary_synops if cost else 0}
    return LayerCounts(node.id, layer_kind(node, index), node.location, spike_in, steps,
                       weight_bytes=param_bytes(node), fan_out=fan_out(node), **fields)


def binary_counts_record(graph: NetworkIR, run: BinaryRun, weights: str, checkpoint: str = "") -> CountsRecord:
    """CountsRecord of the binary network's spiking and spike-fed layers for one frame (energy profiler)."""
    index = graph.index()
    layers = [binary_layer_counts(n, run, index) for n in graph.nodes
              if n.op in ("neuron", "conv", "memory", "retrieve")]
    return CountsRecord(graph.variant, checkpoint, 1, "pytorch", weights, layers)


def format_costs(costs: list[BinaryCost]) -> str:
    """Totals of graded vs binary: time steps, events, synaptic operations."""
    neurons = [c for c in costs if c.op == "neuron"]
    syn = [c for c in costs if c.op != "neuron"]
    ge, be = sum(c.graded_events for c in neurons), sum(c.binary_events for c in neurons)
    gs, bs = sum(c.graded_synops for c in syn), sum(c.binary_synops for c in syn)
    steps = max((c.timesteps for c in costs), default=0)
    return (f"time steps {steps} -> {steps * SUBSTEPS} sub-steps; spike events {ge:,} graded -> {be:,} binary "
            f"(x{be / max(ge, 1):.2f}); synaptic ops {gs:,} multiply-accumulates -> {bs:,} accumulates "
            f"(x{bs / max(gs, 1):.2f})")
