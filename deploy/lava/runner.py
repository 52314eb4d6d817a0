"""`LavaBackend` / `LavaRunner`: the `deploy.backend.Runner` interface over two Lava networks.

The template network runs one Lava step per template encoding; its memories are installed as the
state of the search network's MRM segments (Var init before the search network's first run,
`Var.set` later). The search network runs one Lava step per frame. Both networks stay alive
(their runtimes paused between steps) until `close()`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy.lava_compat import install

install()  # the 3.11 shims, right before the first Lava import (idempotent)
from deploy.backend import memory_names
from deploy.lava.builder import LavaGraph, build_graph


class LavaRunner:
    """Template and search graphs of a bundle as Lava networks (fixed_pt CPU simulation)."""

    def __init__(self, bundle: Any, trace: bool = False):
        self.bundle = bundle
        self.template: LavaGraph = build_graph(bundle.template, trace)
        self.search: LavaGraph = build_graph(bundle.search, trace)
        self._memory_names = memory_names(bundle)

    def encode_templates(self, templates: np.ndarray) -> dict[str, np.ndarray]:
        """Templates (T, 3, S, S) -> memories (one Lava step of the template network), installed as state."""
        memories = self.template.step({self.bundle.template.inputs[0]: templates})
        self.set_memories(memories)
        return memories

    def set_memories(self, memories: dict[str, np.ndarray]) -> None:
        """Install memories into the search network's state Vars."""
        missing = set(self._memory_names) - set(memories)
        if missing:
            raise KeyError(f"missing memories {sorted(missing)}")
        self.search.set_state({k: memories[k] for k in self._memory_names})

    def run_frame(self, search: np.ndarray) -> dict[str, np.ndarray]:
        """One search frame: one Lava step of the search network."""
        return self.search.step({"search": search})

    def counts(self) -> dict[str, dict[str, np.ndarray]]:
        """Graph name -> node id -> stats summed over every step so far."""
        return {"template": self.template.counts(), "search": self.search.counts()}

    def node_outputs(self, graph: str) -> dict[str, np.ndarray]:
        """Node outputs of the last step of `graph` ('template' or 'search'); needs trace=True."""
        return {"template": self.template, "search": self.search}[graph].node_outputs()

    @property
    def startup_seconds(self) -> float:
        """Compile and process start-up time spent so far (both networks)."""
        return self.template.startup_seconds + self.search.startup_seconds

    def close(self) -> None:
        """Stop both networks (skipped for a network whose run failed: stopping it would hang)."""
        self.template.close()
        self.search.close()


class LavaBackend:
    """Builds `LavaRunner`s."""

    name = "lava"

    def build(self, bundle: Any, trace: bool = False) -> LavaRunner:
        return LavaRunner(bundle, trace)
