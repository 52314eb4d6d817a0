"""Batch-norm flavours of the official model and conv+BN pairs."""
from __future__ import annotations

import torch
from torch import nn


class FrozenBatchNorm(nn.Module):
    """BN with fixed statistics and affine held as buffers (backbone layers, spec §4); any rank."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (scale, shift) with y = x * scale + shift."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, ...)
        scale, shift = self.scale_shift()
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(view) + shift.view(view)


def bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference-form (scale, shift) of a frozen or regular (eval) batch norm."""
    if isinstance(bn, FrozenBatchNorm):
        return bn.scale_shift()
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    return scale, bn.bias - bn.running_mean * scale


def conv_bn(cin: int, cout: int, kernel: int = 1, *, groups: int = 1, frozen: bool = True,
            stride: int = 1, bias: bool = False) -> nn.Sequential:
    """`Sequential(Conv2d, BN)` as the official `*_conv` modules (keys `.0.weight`, `.1.*`)."""
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias)
    return nn.Sequential(conv, FrozenBatchNorm(cout) if frozen else nn.BatchNorm2d(cout))


def apply_per_step(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D/1-D module to every time step with shared weights: (T, B, ...) -> (T, B, ...)."""
    y = module(x.flatten(0, 1))
    return y.reshape(x.shape[:2] + y.shape[1:])
