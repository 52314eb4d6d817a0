"""`LinearAttention`: spike-driven linear attention `Q (K^T V)` with an integer multiplier and shift."""
from __future__ import annotations

from typing import Sequence

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class LinearAttention(AbstractProcess):
    """Per time step and head j (channel c -> head c // (C/h)): `M = k^T v` over the N tokens (exact,
    F = 4), `acc = q @ M`, `out = sat(rshift(acc * multiplier, shift))`, where
    `multiplier * 2^-shift ~ 2/sqrt(d) * 2^(F_out - 2 - 4)`.

    `q_in`, `k_in` (T, C, H, W) and `v_in` (T, Cv, H, W) spikes -> `out` (T, Cv, H, W).
    Vars `attention_ops` (event-driven accumulates: (sum k + sum q) * dv), `saturated`."""

    def __init__(self, *, qk_shape: Sequence[int], v_channels: int, heads: int, multiplier: int, shift: int,
                 name: str | None = None):
        t, c, h, w = qk_shape
        if c % heads or v_channels % heads:
            raise ValueError(f"{c} / {v_channels} channels do not split into {heads} heads")
        if not 0 < multiplier < 1 << 16:
            raise ValueError(f"multiplier must be a 16-bit unsigned integer, got {multiplier}")
        v_shape = (t, v_channels, h, w)
        super().__init__(heads=heads, multiplier=multiplier, shift=shift, name=name)
        self.q_in = InPort(shape=tuple(qk_shape))
        self.k_in = InPort(shape=tuple(qk_shape))
        self.v_in = InPort(shape=v_shape)
        self.out = OutPort(shape=v_shape)
        self.attention_ops = Var(shape=(1,), init=0)
        self.saturated = Var(shape=(1,), init=0)
