"""fixed_pt models of `MemoryWrite` and `MemoryRead` (exact float BLAS, bounds in deploy.kernels)."""
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
from deploy.lava.procs.memory_retrieval.process import MemoryRead, MemoryWrite


@implements(proc=MemoryWrite, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMemoryWriteModelFixed(PyLoihiProcessModel):
    """k^T v per step and head."""

    k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=3)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=3)
    m_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    attention_ops: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)

    def run_spk(self) -> None:
        k = np.asarray(self.k_in.recv(), dtype=np.int64)
        memory = K.kv_memory(k, np.asarray(self.v_in.recv(), dtype=np.int64), self.proc_params["heads"])
        self.attention_ops[0] += int(k.sum()) * memory.shape[-1]
        self.m_out.send(memory)


@implements(proc=MemoryRead, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMemoryReadModelFixed(PyLoihiProcessModel):
    """q @ M with the memory as state, integer multiply-shift."""

    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=3)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    memory: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    attention_ops: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)
    saturated: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=64)

    def run_spk(self) -> None:
        p = self.proc_params
        q = np.asarray(self.q_in.recv(), dtype=np.int64)
        acc = K.retrieve_accumulate(q, self.memory, p["heads"])
        y, clipped = K.saturate(K.scale_shift(acc, p["multiplier"], p["shift"]))
        self.attention_ops[0] += int(q.sum()) * self.memory.shape[-1]
        self.saturated[0] += clipped
        self.out.send(y)
