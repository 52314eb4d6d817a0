"""fixed_pt model of `MultiSpikeNeuron` (vectorized over neurons, a loop over the T <= 4 steps)."""
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
from deploy.lava.procs.neuron.process import MultiSpikeNeuron


@implements(proc=MultiSpikeNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMultiSpikeNeuronModelFixed(PyLoihiProcessModel):
    """Integer membrane in F fractional bits; graded spikes 0..4 on an int32 port."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=3)
    decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)
    updates: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)
    saturated: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)

    def run_spk(self) -> None:
        x = np.asarray(self.a_in.recv(), dtype=np.int64)
        p = self.proc_params
        s, clipped = K.neuron(x, p["frac_bits"], self.decay[: x.shape[0] - 1], p["reset"])
        self.spikes[0] += int(s.sum())
        self.updates[0] += s.size
        self.saturated[0] += clipped
        self.s_out.send(s)
