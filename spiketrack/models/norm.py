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


class BatchNormAnyRank(nn.modules.batchnorm._BatchNorm):
    """Regular BN (batch statistics, trainable affine) for (N, C, ...) inputs of any rank: stands in for a
    FrozenBatchNorm while a backbone trains from scratch (see `thaw_frozen_bn`)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an (N, C, ...) input, got {x.dim()} dimensions")


def thaw_frozen_bn(model: nn.Module) -> int:
    """Replace every FrozenBatchNorm by a BatchNormAnyRank with the same statistics and affine (in place);
    returns how many were replaced."""
    return _swap(model, FrozenBatchNorm, _thawed)


def freeze_thawed_bn(model: nn.Module) -> int:
    """Undo `thaw_frozen_bn`: BatchNormAnyRank -> FrozenBatchNorm with the learnt statistics and affine."""
    return _swap(model, BatchNormAnyRank, _frozen)


def _thawed(bn: FrozenBatchNorm) -> BatchNormAnyRank:
    return _copy_state(bn, BatchNormAnyRank(bn.weight.numel(), eps=bn.eps).to(bn.weight.device))


def _frozen(bn: BatchNormAnyRank) -> FrozenBatchNorm:
    return _copy_state(bn, FrozenBatchNorm(bn.num_features, eps=bn.eps).to(bn.weight.device))


def _copy_state(src: nn.Module, dst: nn.Module) -> nn.Module:
    """`dst` with `src`'s affine and running statistics copied in."""
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, name).copy_(getattr(src, name))
    return dst


def _swap(model: nn.Module, kind: type, convert) -> int:
    targets = [(parent, name, child) for parent in model.modules()
               for name, child in parent.named_children() if type(child) is kind]
    for parent, name, child in targets:
        setattr(parent, name, convert(child))
    return len(targets)


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
