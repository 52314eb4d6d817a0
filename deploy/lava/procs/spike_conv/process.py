"""`SpikeConv`: exact integer convolution of graded spikes with 8-bit weights, requantized."""
from __future__ import annotations

from typing import Sequence

import numpy as np

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from deploy.kernels import out_size


class SpikeConv(AbstractProcess):
    """Per Lava step and time step t: `y_t = sat(rshift(conv(s_t, w), shift) + bias)`.

    `s_in` (T, Cin, H, W) spikes 0..4 -> `a_out` (T, Cout, Ho, Wo) in F_out. Vars `weight`
    (Cout, Cin/groups, k, k) in [-128, 127], `bias` (Cout,) in F_out, `synops` (sum of input spike x
    fan-out, border exact), `saturated`. `shift = F_in - e_w - F_out` (FIXED_POINT.md)."""

    def __init__(self, *, in_shape: Sequence[int], weight: np.ndarray, bias: np.ndarray | None = None,
                 stride: int = 1, padding: int = 0, groups: int = 1, shift: int = 0, name: str | None = None):
        t, cin, h, w = in_shape
        cout, cin_g, k, k2 = np.shape(weight)
        if k != k2 or cin_g * groups != cin:
            raise ValueError(f"weight {np.shape(weight)} does not fit input {tuple(in_shape)} with groups={groups}")
        weight = np.asarray(weight, dtype=np.int64)
        if weight.min(initial=0) < -128 or weight.max(initial=0) > 127:
            raise ValueError("weights must be 8-bit mantissas in [-128, 127]")
        out_shape = (t, cout, out_size(h, k, stride, padding), out_size(w, k, stride, padding))
        super().__init__(in_shape=tuple(in_shape), out_shape=out_shape, stride=stride, padding=padding,
                         groups=groups, shift=shift, name=name)
        self.s_in = InPort(shape=tuple(in_shape))
        self.a_out = OutPort(shape=out_shape)
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=(cout,), init=np.zeros(cout, np.int64) if bias is None else np.asarray(bias))
        self.synops = Var(shape=(1,), init=0)
        self.saturated = Var(shape=(1,), init=0)
