"""`Segment`: a fused sub-graph of neuromorphic IR nodes evaluated in one process (see deploy.lava.fused)."""
from __future__ import annotations

from typing import Any, Sequence

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.process.process import AbstractProcess

from deploy.lava.fused import declare_segment, segment_params


class Segment(AbstractProcess):
    """Neuromorphic IR nodes (conv, neuron, add, pooling, attention, memory reads) fused per block.

    Ports `in_<i>` / `out_<i>` carry the flattened edges named in `inputs` / `outputs` (int32);
    Vars `state` (memories), `counts`, `steps` and the debug port `trace_out` as in deploy.lava.fused."""

    def __init__(self, *, nodes: Sequence[Any], inputs: Sequence[tuple[str, tuple]],
                 outputs: Sequence[tuple[str, tuple]], state: Sequence[tuple[str, tuple]] = (),
                 frac_bits: dict[str, int | None] | None = None, trace: bool = False, name: str | None = None):
        super().__init__(name=name, **segment_params(nodes, inputs, outputs, state, frac_bits or {}, trace))
        declare_segment(self, nodes, inputs, outputs, state, trace)
