"""Build and run SpikeTrack's IR graphs as Lava process networks on `Loihi2SimCfg(select_tag='fixed_pt')`.

Each graph of a bundle (template, search) is fused into segments (`deploy.partition`), one Lava
process per segment: `Segment` for neuromorphic nodes, `HostOps` for host nodes. Graph inputs
enter through `Injector`s, graph outputs leave through `Extractor`s; the search graph's memories
are the `state` Var of the MRM segments, set once per template update (Var init before the
first run, `Var.set` afterwards).

Time protocol (see deploy.lava.fused): one Lava step per frame. `LavaGraph.step` queues the
inputs in the injectors, runs `RunSteps(1)` blocking (so a failing worker raises instead of
leaving a receive hanging), then takes the outputs from the extractors. Every process computes
once per step, on the data that arrived in that step, in dependency order (zero lag).

The main graph runs on these numpy processes. lava-dl netx (`netx.hdf5.Network`, Lava's Conv
model) is only exercised by a test proving one exported conv layer equal to `Segment`: at
~450 ms per conv step (../shared/notes/LAVA.md §7) it is far too slow for the whole network.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy.lava_compat import install

install()  # the 3.11 shims, right before the first Lava import (idempotent)
from deploy.lava_compat import run_or_raise
from deploy.partition import SegmentSpec, partition
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
from lava.proc.io.injector import Injector, PyLoihiInjectorModel

from deploy.graph_eval import STAT_FIELDS
from deploy.lava.procs.host.process import HostOps
from deploy.lava.procs.segment.process import Segment


CHANNEL_DEPTH = 2  # messages per channel: each port carries one message per step, consumed in that step


def compile_config() -> dict[str, int]:
    """Shallow channels: Lava's default depth 64 would allocate 64 copies of every edge in shared memory."""
    return {"pypy_channel_size": CHANNEL_DEPTH}


def run_config() -> Loihi2SimCfg:
    """fixed_pt CPU simulation; the untagged Injector/Extractor models named explicitly (LAVA.md §4)."""
    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={
        Injector: PyLoihiInjectorModel, Extractor: PyLoihiExtractorModel})


def _flat(shape: tuple[int, ...]) -> tuple[int]:
    return (int(math.prod(shape)),)


def make_process(spec: SegmentSpec, graph: Any, trace: bool) -> AbstractProcess:
    """The Lava process of one segment (`HostOps` for host segments, else `Segment`)."""
    index = graph.index()
    nodes = [index[i] for i in spec.node_ids]
    inputs = [(i, index[i].shape) for i in spec.inputs]
    outputs = [(i, index[i].shape) for i in spec.outputs]
    frac_bits = {i: index[i].frac_bits for i in (*spec.inputs, *spec.state)}
    if spec.location == "host":
        return HostOps(nodes=nodes, inputs=inputs, outputs=outputs, frac_bits=frac_bits, trace=trace,
                       name=spec.name)
    state = [(i, index[i].shape) for i in spec.state]
    return Segment(nodes=nodes, inputs=inputs, outputs=outputs, state=state, frac_bits=frac_bits,
                   trace=trace, name=spec.name)


@dataclass
class LavaGraph:
    """One IR graph as a Lava network: processes by segment name, I/O processes, state slots."""

    graph: Any
    specs: list[SegmentSpec]
    procs: dict[str, AbstractProcess]
    injectors: dict[str, Injector]
    extractors: dict[str, Extractor]
    state_slots: dict[str, list[tuple[str, int, int]]]  # memory name -> [(segment, start, stop) in `state`]
    tracers: dict[str, Extractor] = field(default_factory=dict)  # segment -> its trace_out extractor
    trace: bool = False
    started: bool = False
    failed: bool = False
    steps: int = 0
    startup_seconds: float = 0.0
    _pending_state: dict[str, np.ndarray] = field(default_factory=dict)
    _last_trace: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def anchor(self) -> AbstractProcess:
        """The process the network is run through (any member would do)."""
        return next(iter(self.procs.values()))

    def set_state(self, values: dict[str, np.ndarray]) -> None:
        """Install memories (graph input name -> int array) into the `state` Vars of their segments."""
        for name, value in values.items():
            if name not in self.state_slots:
                raise KeyError(f"{name} is not a state input of the {self.graph.name} graph")
            shape = self.graph.node(name).shape
            if tuple(np.shape(value)) != tuple(shape):
                raise ValueError(f"{name}: shape {np.shape(value)} differs from the graph's {shape}")
            self._pending_state[name] = np.asarray(value, dtype=np.int64)
        by_segment: dict[str, list[tuple[str, int, int]]] = {}
        for name in self._pending_state:
            for segment, a, b in self.state_slots[name]:
                by_segment.setdefault(segment, []).append((name, a, b))
        for segment, slots in by_segment.items():
            var = self.procs[segment].state
            complete = sum(b - a for _, a, b in slots) == var.shape[0]
            flat = (np.zeros(var.shape, dtype=np.int32) if complete or not self.started
                    else np.rint(np.asarray(var.get(), dtype=np.float64)).astype(np.int32))
            for name, a, b in slots:
                flat[a:b] = self._pending_state[name].ravel()
            if self.started:
                var.set(flat)
            else:
                var.init = flat
        if self.started:
            self._pending_state.clear()

    def step(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one Lava step on `inputs` (graph input name -> array); graph outputs by name (exact ints)."""
        if self.failed:
            raise RuntimeError(f"the {self.graph.name} Lava network failed earlier; build a new one")
        missing = set(self.injectors) - set(inputs)
        if missing:
            raise KeyError(f"missing graph inputs {sorted(missing)}")
        if not self.started:
            start = time.perf_counter()
            self.anchor.create_runtime(run_cfg=run_config(), compile_config=compile_config())
            self.startup_seconds += time.perf_counter() - start
            self.started = True
            self._pending_state.clear()
        for name, injector in self.injectors.items():
            injector.send(np.asarray(inputs[name], dtype=np.float64).ravel())
        try:
            run_or_raise(self.anchor, RunSteps(num_steps=1))
        except BaseException:
            self.failed = True
            raise
        self.steps += 1
        self._last_trace = {name: ext.receive() for name, ext in self.tracers.items()}
        index = self.graph.index()
        return {name: np.rint(ext.receive()).astype(np.int64).reshape(index[self.graph.outputs[name]].shape)
                for name, ext in self.extractors.items()}

    def counts(self) -> dict[str, np.ndarray]:
        """Node id -> raw stats row (`graph_eval.STAT_FIELDS`) summed over all steps so far."""
        out: dict[str, np.ndarray] = {}
        for spec in self.specs:
            proc = self.procs[spec.name]
            rows = (np.rint(np.asarray(proc.counts.get(), dtype=np.float64)).astype(np.int64) if self.started
                    else np.zeros((len(spec.node_ids), len(STAT_FIELDS)), dtype=np.int64))
            out.update(zip(spec.node_ids, rows.reshape(len(spec.node_ids), len(STAT_FIELDS))))
        return out

    def node_outputs(self) -> dict[str, np.ndarray]:
        """Every node's output of the last step (needs `trace=True`), from the segments' trace ports."""
        if not self.trace:
            raise RuntimeError("node outputs need a network built with trace=True")
        index = self.graph.index()
        out: dict[str, np.ndarray] = {}
        for spec in self.specs:
            flat = np.rint(np.asarray(self._last_trace[spec.name], dtype=np.float64)).astype(np.int64)
            start = 0
            for nid in spec.node_ids:
                size = int(math.prod(index[nid].shape))
                out[nid] = flat[start:start + size].reshape(index[nid].shape)
                start += size
        return out

    def close(self) -> None:
        """Stop the runtime after successful runs; never after a failed one (it would hang, LAVA.md §9)."""
        if self.started and not self.failed:
            self.anchor.stop()
        self.started = False


def build_graph(graph: Any, trace: bool = False) -> LavaGraph:
    """Processes, injectors and extractors of one IR graph, connected; nothing runs yet."""
    specs = partition(graph)
    index = graph.index()
    procs = {spec.name: make_process(spec, graph, trace) for spec in specs}
    producer = {nid: (spec.name, k) for spec in specs for k, nid in enumerate(spec.outputs)}
    injectors: dict[str, Injector] = {}
    for spec in specs:
        proc = procs[spec.name]
        for k, nid in enumerate(spec.inputs):
            port = getattr(proc, f"in_{k}")
            if nid in spec.node_ids:  # a graph input node of this segment: raw data from the host
                injectors[nid] = Injector(shape=_flat(index[nid].shape), buffer_size=CHANNEL_DEPTH)
                injectors[nid].out_port.connect(port)
            else:
                source, j = producer[nid]
                getattr(procs[source], f"out_{j}").connect(port)
    extractors: dict[str, Extractor] = {}
    for name, nid in graph.outputs.items():
        source, j = producer[nid]
        extractors[name] = Extractor(shape=_flat(index[nid].shape), buffer_size=CHANNEL_DEPTH)
        getattr(procs[source], f"out_{j}").connect(extractors[name].in_port)
    slots: dict[str, list[tuple[str, int, int]]] = {}
    for spec in specs:
        start = 0
        for nid in spec.state:
            size = int(math.prod(index[nid].shape))
            slots.setdefault(nid, []).append((spec.name, start, start + size))
            start += size
    tracers: dict[str, Extractor] = {}
    if trace:
        for spec in specs:
            tracers[spec.name] = Extractor(shape=procs[spec.name].trace_out.shape, buffer_size=CHANNEL_DEPTH)
            procs[spec.name].trace_out.connect(tracers[spec.name].in_port)
    return LavaGraph(graph, specs, procs, injectors, extractors, slots, tracers, trace)
