"""fixed_pt model of `SpikeConv`: im2col (sliding windows) + exact float BLAS (deploy.kernels)."""
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
from deploy.lava.procs.spike_conv.process import SpikeConv


@implements(proc=SpikeConv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeConvModelFixed(PyLoihiProcessModel):
    """Graded spikes in, 24-bit currents out."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=3)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    synops: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)
    saturated: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)

    def run_spk(self) -> None:
        p = self.proc_params
        s = np.asarray(self.s_in.recv(), dtype=np.int64)
        k = self.weight.shape[-1]
        acc = K.conv_accumulate(s, self.weight, p["stride"], p["padding"], p["groups"], K.MAX_SPIKE)
        y, clipped = K.saturate(K.requantize(acc, p["shift"], self.bias))
        self.synops[0] += self.weight.shape[0] // p["groups"] * K.window_input_sums(s, k, p["stride"], p["padding"])
        self.saturated[0] += clipped
        self.a_out.send(y)
