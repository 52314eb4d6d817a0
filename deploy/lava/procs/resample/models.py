"""fixed_pt models of `AvgPool` and `Upsample` (int64 numpy, exact)."""
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
from deploy.lava.procs.resample.process import AvgPool, Upsample


@implements(proc=AvgPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyAvgPoolModelFixed(PyLoihiProcessModel):
    """Window sums in int64, one rounding shift."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    saturated: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)

    def run_spk(self) -> None:
        p = self.proc_params
        y, clipped = K.saturate(K.avgpool(self.a_in.recv(), p["kernel"], p["shift"]))
        self.saturated[0] += clipped
        self.out.send(y)


@implements(proc=Upsample, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyUpsampleModelFixed(PyLoihiProcessModel):
    """Separable integer bilinear weights, one rounding shift."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    wy: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=4)
    wx: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=4)
    saturated: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)

    def run_spk(self) -> None:
        y, clipped = K.saturate(K.upsample(self.a_in.recv(), self.wy, self.wx, self.proc_params["shift"]))
        self.saturated[0] += clipped
        self.out.send(y)
