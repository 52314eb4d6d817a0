"""The one interface between the tracker loop and a deployment backend (Lava, or plain numpy).

`get_backend(name).build(bundle) -> Runner`; a Runner encodes templates into memories (held as
state by the search graph), runs one search frame at a time and reports per-node statistics.
Only `deploy.lava` imports Lava; selecting the 'numpy' backend never does.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from deploy.graph_eval import STAT_FIELDS, evaluate_nodes

BACKENDS = ("lava", "numpy")


class Runner(Protocol):
    """A built bundle: template graph and search graph, ready to run frame by frame."""

    startup_seconds: float  # one-off compile / start-up time included in the calls so far

    def encode_templates(self, templates: np.ndarray) -> dict[str, np.ndarray]:
        """Normalized templates (T, 3, S, S) -> memories by name; they become the search graph's state."""

    def set_memories(self, memories: dict[str, np.ndarray]) -> None:
        """Install memories (e.g. cached ones) as the search graph's state."""

    def run_frame(self, search: np.ndarray) -> dict[str, np.ndarray]:
        """Normalized search crop (1, 3, S, S) -> graph outputs (integer maps) by name."""

    def counts(self) -> dict[str, dict[str, np.ndarray]]:
        """Graph name -> node id -> stats row (`graph_eval.STAT_FIELDS`) summed over all runs."""

    def node_outputs(self, graph: str) -> dict[str, np.ndarray]:
        """Every node output of the last run of `graph` (runners built with trace=True)."""

    def close(self) -> None:
        """Release processes / memory."""


class Backend(Protocol):
    """Builds runners from IR bundles."""

    name: str

    def build(self, bundle: Any, trace: bool = False) -> Runner:
        """A runner for both graphs of `bundle` (a converters.ir.IRBundle)."""


def memory_names(bundle: Any) -> list[str]:
    """Search-graph inputs that are memories, in the template graph's output order."""
    return [name for name in bundle.template.outputs if name in bundle.search.inputs]


class NumpyGraph:
    """One IR graph evaluated in-process with the same kernels as the Lava processes."""

    def __init__(self, graph: Any, trace: bool):
        self.graph, self.trace = graph, trace
        self.state: dict[str, np.ndarray] = {}
        self.totals = {n.id: np.zeros(len(STAT_FIELDS), dtype=np.int64) for n in graph.nodes}
        self.last: dict[str, np.ndarray] = {}

    def step(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Evaluate the whole graph once; graph outputs by name."""
        values = {**self.state, **inputs}
        index = self.graph.index()
        outputs, stats = evaluate_nodes(self.graph.nodes, values, {k: index[k].frac_bits for k in values})
        for node, row in zip(self.graph.nodes, stats):
            self.totals[node.id] += row
        if self.trace:
            self.last = outputs
        return {name: outputs[nid] for name, nid in self.graph.outputs.items()}


class NumpyRunner:
    """Runner without Lava (reference for the interface and a fast fallback)."""

    def __init__(self, bundle: Any, trace: bool = False):
        self.bundle = bundle
        self.graphs = {"template": NumpyGraph(bundle.template, trace), "search": NumpyGraph(bundle.search, trace)}
        self.startup_seconds = 0.0

    def encode_templates(self, templates: np.ndarray) -> dict[str, np.ndarray]:
        memories = self.graphs["template"].step({self.bundle.template.inputs[0]: templates})
        self.set_memories(memories)
        return memories

    def set_memories(self, memories: dict[str, np.ndarray]) -> None:
        self.graphs["search"].state = {k: np.asarray(v, dtype=np.int64) for k, v in memories.items()}

    def run_frame(self, search: np.ndarray) -> dict[str, np.ndarray]:
        return self.graphs["search"].step({"search": search})

    def counts(self) -> dict[str, dict[str, np.ndarray]]:
        return {name: {k: v.copy() for k, v in g.totals.items()} for name, g in self.graphs.items()}

    def node_outputs(self, graph: str) -> dict[str, np.ndarray]:
        if not self.graphs[graph].trace:
            raise RuntimeError("node outputs need a runner built with trace=True")
        return dict(self.graphs[graph].last)

    def close(self) -> None:
        self.graphs.clear()


class NumpyBackend:
    """In-process numpy evaluation of the bundle."""

    name = "numpy"

    def build(self, bundle: Any, trace: bool = False) -> Runner:
        return NumpyRunner(bundle, trace)


def get_backend(name: str = "lava") -> Backend:
    """The backend called `name` ('lava' or 'numpy'); ValueError for others."""
    if name == "lava":
        from deploy.lava.runner import LavaBackend  # imports Lava

        return LavaBackend()
    if name == "numpy":
        return NumpyBackend()
    raise ValueError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
