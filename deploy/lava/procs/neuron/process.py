"""`MultiSpikeNeuron`: SpikeTrack's multi-spike neuron (graded spikes 0..4, soft reset, 12-bit decay)."""
from __future__ import annotations

from typing import Sequence

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class MultiSpikeNeuron(AbstractProcess):
    """Per Lava step: input currents `a_in` (T, ...) in F = `frac_bits` -> spikes `s_out` (T, ...) 0..4.

    `v_0 = x_0`, `s_t = clamp(rshift(v_t, F), 0, 4)`, `v_t = sat(rshift((v_{t-1} - r) d_{t-1}, 12) + x_t)`,
    `r = s_{t-1} 2^(F-2)` ('normalized') or `s_{t-1} 2^F` ('integer'). Vars `decay` (T-1 12-bit factors),
    `spikes` (sum of spike values), `updates` (membrane updates), `saturated`."""

    def __init__(self, *, shape: Sequence[int], frac_bits: int, decay: Sequence[int] = (),
                 reset: str = "normalized", name: str | None = None):
        shape = tuple(shape)
        if len(decay) != shape[0] - 1:
            raise ValueError(f"{shape[0]} time steps need {shape[0] - 1} decay factors, got {len(decay)}")
        super().__init__(shape=shape, frac_bits=frac_bits, reset=reset, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.decay = Var(shape=(max(1, len(decay)),), init=list(decay) or [0])
        self.spikes = Var(shape=(1,), init=0)
        self.updates = Var(shape=(1,), init=0)
        self.saturated = Var(shape=(1,), init=0)
