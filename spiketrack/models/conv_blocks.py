"""Convolutional building blocks of the SDTv3 backbone: downsampling, separable conv, conv block."""
from __future__ import annotations

import torch
from torch import nn

from .neuron import MultiSpikeNeuron
from .norm import FrozenBatchNorm, apply_per_step, conv_bn


class Downsample(nn.Module):
    """[spike ->] Conv kxk stride s (bias) -> frozen BN; the first one takes real-valued pixels."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, first: bool, neuron: dict):
        super().__init__()
        self.encode_spike = None if first else MultiSpikeNeuron(**neuron)
        self.encode_conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
        self.encode_bn = FrozenBatchNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, Cin, H, W) -> (T, B, Cout, H', W')
        if self.encode_spike is not None:
            x = self.encode_spike(x)
        return apply_per_step(lambda y: self.encode_bn(self.encode_conv(y)), x)


class SepConv(nn.Module):
    """Inverted separable conv, expansion 2: spike-pw1-spike-dw-spike-pw2, frozen BN after each conv."""

    def __init__(self, dim: int, kernel: int, neuron: dict):
        super().__init__()
        med = 2 * dim
        self.spike1 = MultiSpikeNeuron(**neuron)
        self.pwconv1 = conv_bn(dim, med)
        self.spike2 = MultiSpikeNeuron(**neuron)
        self.dwconv = conv_bn(med, med, kernel, groups=med)
        self.spike3 = MultiSpikeNeuron(**neuron)
        self.pwconv2 = conv_bn(med, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, C, H, W)
        x = apply_per_step(self.pwconv1, self.spike1(x))
        x = apply_per_step(self.dwconv, self.spike2(x))
        return apply_per_step(self.pwconv2, self.spike3(x))


class ConvBlock(nn.Module):
    """MS_ConvBlock: x + SepConv(x), then x + BN(conv3x3(spike(BN(conv3x3(spike(x))))))."""

    def __init__(self, dim: int, neuron: dict, mlp_ratio: int = 4):
        super().__init__()
        hidden = dim * mlp_ratio
        self.Conv = SepConv(dim, 7, neuron)
        self.spike1 = MultiSpikeNeuron(**neuron)
        self.conv1 = nn.Conv2d(dim, hidden, 3, padding=1, bias=False)
        self.bn1 = FrozenBatchNorm(hidden)
        self.spike2 = MultiSpikeNeuron(**neuron)
        self.conv2 = nn.Conv2d(hidden, dim, 3, padding=1, bias=False)
        self.bn2 = FrozenBatchNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, C, H, W)
        x = x + self.Conv(x)
        y = apply_per_step(lambda z: self.bn1(self.conv1(z)), self.spike1(x))
        y = apply_per_step(lambda z: self.bn2(self.conv2(z)), self.spike2(y))
        return x + y
