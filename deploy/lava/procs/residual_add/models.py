"""fixed_pt model of `ResidualAdd`."""
from __future__ import annotations

import numpy as np

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from deploy import kernels as K
from deploy.lava.procs.residual_add.process import ResidualAdd


@implements(proc=ResidualAdd, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyResidualAddModelFixed(PyLoihiProcessModel):
    """24-bit integer edges."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    b_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    saturated: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)

    def run_spk(self) -> None:
        y, clipped = K.saturate(K.add([self.a_in.recv(), self.b_in.recv()], self.proc_params["shifts"]))
        self.saturated[0] += clipped
        self.out.send(y)
