"""Model of `HostOps`. Tagged fixed_pt so that `Loihi2SimCfg(select_tag='fixed_pt')` selects it with
the rest of the network; it computes the IR's host semantics (float64 for gate and sigmoid)."""
from __future__ import annotations

import numpy as np

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from deploy.lava.fused import MAX_PORTS, FusedSegmentModel
from deploy.lava.procs.host.process import HostOps


@implements(proc=HostOps, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyHostOpsModel(FusedSegmentModel):
    """float64 ports; integer node outputs are sent as exact float64 values."""

    state: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)
    steps: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)


PyHostOpsModel.trace_out = LavaPyType(PyOutPort.VEC_DENSE, float)
for _i in range(MAX_PORTS):
    setattr(PyHostOpsModel, f"in_{_i}", LavaPyType(PyInPort.VEC_DENSE, float))
    setattr(PyHostOpsModel, f"out_{_i}", LavaPyType(PyOutPort.VEC_DENSE, float))
