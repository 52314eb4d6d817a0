"""`HostOps`: IR nodes located on the host (image quantization, stem conv, channel gate, sigmoid)."""
from __future__ import annotations

from typing import Any, Sequence

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.process.process import AbstractProcess

from deploy.lava.fused import declare_segment, segment_params


class HostOps(AbstractProcess):
    """A fused sub-graph of `location == 'host'` nodes: the CPU beside the chip, float64 where the IR
    says so (gate, sigmoid), integer otherwise (conv_dense). Ports are float64 so raw images pass
    unchanged; integer edges travel as exact float64 values. Vars as `Segment`."""

    def __init__(self, *, nodes: Sequence[Any], inputs: Sequence[tuple[str, tuple]],
                 outputs: Sequence[tuple[str, tuple]], frac_bits: dict[str, int | None] | None = None,
                 trace: bool = False, name: str | None = None):
        bad = [n.id for n in nodes if n.location != "host"]
        if bad:
            raise ValueError(f"HostOps holds host nodes only, got {bad}")
        super().__init__(name=name, **segment_params(nodes, inputs, outputs, (), frac_bits or {}, trace))
        declare_segment(self, nodes, inputs, outputs, (), trace)
