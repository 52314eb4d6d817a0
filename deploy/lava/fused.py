"""Shared parts of the fused sub-graph processes (`procs.segment.Segment`, `procs.host.HostOps`).

Time protocol: one Lava step is one frame (or one template encoding). In each step a fused
process receives every in-port (blocking until its producers have sent), evaluates its IR nodes
in order — all T model time steps of every edge at once — and sends its out-ports. Producers run
before consumers inside the same step, so the whole DAG of processes completes within the step
(zero lag: the graph outputs of frame k leave in step k). Ports carry whole flattened edges
`(T, C, H, W)`; unused ports (a fixed number is declared, as Lava models need static port names)
stay unconnected with shape (1,).

Vars: `state` (flat, the memories of the segment, set once per template update), `counts` (per
node x `graph_eval.STAT_FIELDS`, summed over steps), `steps` (evaluated steps). Debug port
`trace_out`: when tracing, the flat concatenation of every node output of the step (a port, not a
Var: Lava moves Var values one element per message, ~20 us each, far too slow for activations).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from deploy.lava_compat import install

install()  # the 3.11 shims, right before the first Lava import (idempotent)
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from deploy.graph_eval import STAT_FIELDS, evaluate_nodes

MAX_PORTS = 6


def single_threaded_blas() -> None:
    """Limit BLAS to one thread in this (worker) process: processes are the unit of parallelism, and
    multi-threaded OpenBLAS in every one of them busy-waits on a shared CPU (4-5x slower measured)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional; without it BLAS keeps its default
        return
    threadpool_limits(1, user_api="blas")


def _size(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def declare_segment(proc: AbstractProcess, nodes: Sequence[Any], inputs: Sequence[tuple[str, tuple]],
                    outputs: Sequence[tuple[str, tuple]], state: Sequence[tuple[str, tuple]],
                    trace: bool) -> None:
    """Create the ports and Vars of a fused process (call from its `__init__`)."""
    if len(inputs) > MAX_PORTS or len(outputs) > MAX_PORTS:
        raise ValueError(f"{proc.name}: {len(inputs)} inputs / {len(outputs)} outputs exceed {MAX_PORTS} ports")
    for i in range(MAX_PORTS):
        setattr(proc, f"in_{i}", InPort(shape=(_size(inputs[i][1]) if i < len(inputs) else 1,)))
        setattr(proc, f"out_{i}", OutPort(shape=(_size(outputs[i][1]) if i < len(outputs) else 1,)))
    proc.state = Var(shape=(max(1, sum(_size(s) for _, s in state)),), init=0)
    proc.trace_out = OutPort(shape=(trace_size(nodes) if trace else 1,))
    proc.counts = Var(shape=(len(nodes), len(STAT_FIELDS)), init=0)
    proc.steps = Var(shape=(1,), init=0)


def trace_size(nodes: Sequence[Any]) -> int:
    """Length of the debug trace: all node outputs of a segment, flattened and concatenated."""
    return max(1, sum(_size(n.shape) for n in nodes))


def segment_params(nodes: Sequence[Any], inputs: Sequence[tuple[str, tuple]], outputs: Sequence[tuple[str, tuple]],
                   state: Sequence[tuple[str, tuple]], frac_bits: dict[str, int | None], trace: bool) -> dict:
    """The proc_params a fused process hands to its model."""
    return {"nodes": list(nodes), "inputs": [(i, tuple(s)) for i, s in inputs],
            "outputs": [(i, tuple(s)) for i, s in outputs], "state": [(i, tuple(s)) for i, s in state],
            "frac_bits": dict(frac_bits), "trace": bool(trace)}


def flat_spans(shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, int]]:
    """(start, stop) of each shape in a flat concatenation."""
    spans, start = [], 0
    for shape in shapes:
        spans.append((start, start + _size(shape)))
        start += _size(shape)
    return spans


class FusedSegmentModel(PyLoihiProcessModel):
    """Base model: receive all inputs, evaluate the sub-graph, count, trace, send (see module docstring)."""

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        single_threaded_blas()
        p = self.proc_params
        self._nodes = p["nodes"]
        self._inputs = p["inputs"]
        self._outputs = [i for i, _ in p["outputs"]]
        self._state = p["state"]
        self._state_spans = flat_spans([s for _, s in self._state])
        self._trace = p["trace"]
        self._frac_bits = p["frac_bits"]
        self._own = {n.id for n in self._nodes}

    def run_spk(self) -> None:
        values = {nid: self._receive(i, nid, shape) for i, (nid, shape) in enumerate(self._inputs)}
        for (nid, shape), (a, b) in zip(self._state, self._state_spans):
            values[nid] = np.rint(self.state[a:b]).astype(np.int64).reshape(shape)
        outputs, stats = evaluate_nodes(self._nodes, values, self._frac_bits)
        self.counts[:] = self.counts + stats
        self.steps[0] += 1
        if self._trace:
            self.trace_out.send(np.concatenate([outputs[n.id].ravel() for n in self._nodes]))
        for i, nid in enumerate(self._outputs):
            getattr(self, f"out_{i}").send(outputs[nid].ravel())

    def _receive(self, port: int, node_id: str, shape: tuple[int, ...]) -> np.ndarray:
        """In-port data: raw (float) for an image input node of this segment, else exact integers."""
        data = np.asarray(getattr(self, f"in_{port}").recv()).reshape(shape)
        if node_id in self._own:
            return data
        return np.rint(data).astype(np.int64)
