"""`AvgPool` (k x k, stride k) and `Upsample` (bilinear x2 / x4, integer weights)."""
from __future__ import annotations

from typing import Sequence

import deploy.lava_compat  # noqa: F401  (before any Lava import)
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from deploy.kernels import bilinear_weights


class AvgPool(AbstractProcess):
    """`out = sat(rshift(sum over each k x k window, shift))`, `shift = log2(k^2) + F_in - F_out`
    (k^2 a power of two). Var `saturated`."""

    def __init__(self, *, in_shape: Sequence[int], kernel: int, shift: int, name: str | None = None):
        t, c, h, w = in_shape
        area = kernel * kernel
        if area & (area - 1) or h % kernel or w % kernel:
            raise ValueError(f"avgpool {kernel}x{kernel} needs a power-of-two area dividing {h}x{w}")
        out_shape = (t, c, h // kernel, w // kernel)
        super().__init__(in_shape=tuple(in_shape), kernel=kernel, shift=shift, name=name)
        self.a_in = InPort(shape=tuple(in_shape))
        self.out = OutPort(shape=out_shape)
        self.saturated = Var(shape=(1,), init=0)


class Upsample(AbstractProcess):
    """Bilinear x`factor` (2 or 4), align_corners=False, borders as PyTorch:
    `out = sat(rshift(wy @ x @ wx^T, shift))` with integer weights in units of 1/(2 factor) (Vars
    `wy`, `wx`), `shift = 2 log2(2 factor) + F_in - F_out`. Var `saturated`."""

    def __init__(self, *, in_shape: Sequence[int], factor: int, shift: int, name: str | None = None):
        if factor not in (2, 4):
            raise ValueError(f"upsample factor must be 2 or 4, got {factor}")
        t, c, h, w = in_shape
        out_shape = (t, c, h * factor, w * factor)
        super().__init__(in_shape=tuple(in_shape), factor=factor, shift=shift, name=name)
        self.a_in = InPort(shape=tuple(in_shape))
        self.out = OutPort(shape=out_shape)
        self.wy = Var(shape=(h * factor, h), init=bilinear_weights(h, factor))
        self.wx = Var(shape=(w * factor, w), init=bilinear_weights(w, factor))
        self.saturated = Var(shape=(1,), init=0)
