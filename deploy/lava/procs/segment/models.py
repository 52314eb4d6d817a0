"""fixed_pt model of `Segment`: integer kernels of docs/FIXED_POINT.md in vectorized numpy."""
from __future__ import annotations

import numpy as np

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from deploy.lava.fused import MAX_PORTS, FusedSegmentModel
from deploy.lava.procs.segment.process import Segment


@implements(proc=Segment, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySegmentModelFixed(FusedSegmentModel):
    """Integer activations on int32 ports (values within 24 bits)."""

    state: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)
    steps: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)


PySegmentModelFixed.trace_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
for _i in range(MAX_PORTS):
    setattr(PySegmentModelFixed, f"in_{_i}", LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24))
    setattr(PySegmentModelFixed, f"out_{_i}", LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24))
