"""Template memories: `MemoryWrite` builds `M = k^T v`; `MemoryRead` holds M as state and reads it."""
from __future__ import annotations

from typing import Sequence

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class MemoryWrite(AbstractProcess):
    """Template side: `k_in` (T, C, H, W), `v_in` (T, Cv, H, W) spikes -> `m_out` (T, h, d, dv) with
    `M[t, j, a, b] = sum_n k[t, j d + a, n] v[t, j dv + b, n]` (exact integers, F = 4).
    Var `attention_ops` (sum k * dv)."""

    def __init__(self, *, k_shape: Sequence[int], v_channels: int, heads: int, name: str | None = None):
        t, c, h, w = k_shape
        if c % heads or v_channels % heads:
            raise ValueError(f"{c} / {v_channels} channels do not split into {heads} heads")
        super().__init__(heads=heads, name=name)
        self.k_in = InPort(shape=tuple(k_shape))
        self.v_in = InPort(shape=(t, v_channels, h, w))
        self.m_out = OutPort(shape=(t, heads, c // heads, v_channels // heads))
        self.attention_ops = Var(shape=(1,), init=0)


class MemoryRead(AbstractProcess):
    """Search side: the memory M (T, h, d, dv) is state (Var `memory`, set once per template update);
    per Lava step `q_in` (T, C, H, W) spikes -> `out` (T, h dv, H, W) with step t reading M[t]:
    `out = sat(rshift((q @ M) * multiplier, shift))`. Vars `attention_ops` (sum q * dv), `saturated`."""

    def __init__(self, *, q_shape: Sequence[int], memory_shape: Sequence[int], multiplier: int, shift: int,
                 name: str | None = None):
        t, c, h, w = q_shape
        mt, heads, d, dv = memory_shape
        if mt != t or heads * d != c:
            raise ValueError(f"memory {tuple(memory_shape)} does not fit queries {tuple(q_shape)}")
        if not 0 < multiplier < 1 << 16:
            raise ValueError(f"multiplier must be a 16-bit unsigned integer, got {multiplier}")
        super().__init__(heads=heads, multiplier=multiplier, shift=shift, name=name)
        self.q_in = InPort(shape=tuple(q_shape))
        self.out = OutPort(shape=(t, heads * dv, h, w))
        self.memory = Var(shape=tuple(memory_shape), init=0)
        self.attention_ops = Var(shape=(1,), init=0)
        self.saturated = Var(shape=(1,), init=0)
