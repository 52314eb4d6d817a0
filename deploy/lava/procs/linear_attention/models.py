"""fixed_pt model of `LinearAttention`: two exact float BLAS products per step (bounds in deploy.kernels)."""
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
from deploy.lava.procs.linear_attention.process import LinearAttention


@implements(proc=LinearAttention, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLinearAttentionModelFixed(PyLoihiProcessModel):
    """Spikes in, 24-bit integers out."""

    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=3)
    k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=3)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=3)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    attention_ops: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)
    saturated: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)

    def run_spk(self) -> None:
        p = self.proc_params
        q, k, v = (np.asarray(port.recv(), dtype=np.int64) for port in (self.q_in, self.k_in, self.v_in))
        memory = K.kv_memory(k, v, p["heads"])
        acc = K.retrieve_accumulate(q, memory, p["heads"])
        y, clipped = K.saturate(K.scale_shift(acc, p["multiplier"], p["shift"]))
        self.attention_ops[0] += (int(k.sum()) + int(q.sum())) * memory.shape[-1]
        self.saturated[0] += clipped
        self.out.send(y)
