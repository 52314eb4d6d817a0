"""Inference-time BatchNorm folding: conv/linear + BN -> one conv with bias (same function, fewer ops)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .norm import FrozenBatchNorm, bn_scale_shift

NAMED_PAIRS = (("encode_conv", "encode_bn"), ("conv1", "bn1"), ("conv2", "bn2"),
               ("fc1_conv", "fc1_bn"), ("fc2_conv", "fc2_bn"))
_BN = (FrozenBatchNorm, nn.BatchNorm1d, nn.BatchNorm2d)


@torch.no_grad()
def fold_bn(conv: nn.Module, bn: nn.Module) -> None:
    """Fold `bn` (inference form) into `conv`'s weight and bias in place."""
    scale, shift = bn_scale_shift(bn)
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype))


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv attribute, bn attribute) for every conv followed directly by a BN."""
    pairs = []
    for parent in model.modules():
        if isinstance(parent, nn.Sequential) and len(parent) == 2 and isinstance(parent[1], _BN):
            pairs.append((parent, "0", "1"))
        for conv_name, bn_name in NAMED_PAIRS:
            if isinstance(getattr(parent, bn_name, None), _BN) and hasattr(parent, conv_name):
                pairs.append((parent, conv_name, bn_name))
    return pairs


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of `model` with every BN folded into its conv (eval only; keys differ from checkpoints)."""
    model = copy.deepcopy(model).eval()
    for parent, conv_name, bn_name in conv_bn_pairs(model):
        fold_bn(getattr(parent, conv_name), getattr(parent, bn_name))
        setattr(parent, bn_name, nn.Identity())
    return model
