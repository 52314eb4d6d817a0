"""`ResidualAdd`: sum of two integer edges aligned to the output format by rounding shifts."""
from __future__ import annotations

from typing import Sequence

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class ResidualAdd(AbstractProcess):
    """`out = sat(rshift(a, shifts[0]) + rshift(b, shifts[1]))`, `shifts[i] = F_i - F_out`; an input with
    one time step is broadcast over the output's T. Var `saturated`."""

    def __init__(self, *, a_shape: Sequence[int], b_shape: Sequence[int], shifts: Sequence[int],
                 name: str | None = None):
        a_shape, b_shape = tuple(a_shape), tuple(b_shape)
        if a_shape[1:] != b_shape[1:] or (1 not in (a_shape[0], b_shape[0]) and a_shape[0] != b_shape[0]):
            raise ValueError(f"cannot add edges of shapes {a_shape} and {b_shape}")
        shape = (max(a_shape[0], b_shape[0]),) + a_shape[1:]
        super().__init__(shape=shape, shifts=tuple(int(s) for s in shifts), name=name)
        self.a_in = InPort(shape=a_shape)
        self.b_in = InPort(shape=b_shape)
        self.out = OutPort(shape=shape)
        self.saturated = Var(shape=(1,), init=0)
