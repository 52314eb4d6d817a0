"""Spike-driven linear attention Q(K^T V), the spiking MLP and the transformer block (SDTv3)."""
from __future__ import annotations

import torch
from torch import nn

from .conv_blocks import SepConv
from .neuron import MultiSpikeNeuron
from .norm import FrozenBatchNorm, apply_per_step, conv_bn


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(T, B, C, N) -> (T, B, h, N, C/h); channel c goes to head c // (C/h)."""
    t, b, c, n = x.shape
    return x.transpose(-1, -2).reshape(t, b, n, heads, c // heads).permute(0, 1, 3, 2, 4)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(T, B, h, N, dv) -> (T, B, h*dv, N), inverse of `split_heads`."""
    t, b, h, n, dv = x.shape
    return x.transpose(2, 3).reshape(t, b, n, h * dv).transpose(-1, -2)


def retrieve(q: torch.Tensor, memory: torch.Tensor, scale: float) -> torch.Tensor:
    """Linear-attention read: (q @ M) * scale * 2, per head and time step (spec §5.6, §7.3)."""
    return (q @ memory) * scale * 2


def step_pos_embed(tables: nn.ParameterList, steps: int) -> torch.Tensor:
    """Template positional tables for steps 0..T-1 (step t uses table min(t, 3)): (T, 1, C, N)."""
    return torch.stack([tables[min(t, len(tables) - 1)] for t in range(steps)])


class SpikingMLP(nn.Module):
    """MS_MLP on the token view: spike -> Conv1d(C,4C)+BN -> spike -> Conv1d(4C,C)+BN."""

    def __init__(self, dim: int, hidden: int, neuron: dict, frozen: bool = True):
        super().__init__()
        norm = FrozenBatchNorm if frozen else nn.BatchNorm1d
        self.fc1_spike = MultiSpikeNeuron(**neuron)
        self.fc1_conv = nn.Conv1d(dim, hidden, 1)
        self.fc1_bn = norm(hidden)
        self.fc2_spike = MultiSpikeNeuron(**neuron)
        self.fc2_conv = nn.Conv1d(hidden, dim, 1)
        self.fc2_bn = norm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, C, H, W)
        shape = x.shape
        y = self.fc1_spike(x.flatten(3))  # (T, B, C, N)
        y = apply_per_step(lambda z: self.fc1_bn(self.fc1_conv(z)), y)
        y = apply_per_step(lambda z: self.fc2_bn(self.fc2_conv(z)), self.fc2_spike(y))
        return y.reshape(shape)


class SpikingLinearAttention(nn.Module):
    """MS_Attention_linear_3d: spike Q, K, V (V 4x wider), out = spike((Q (K^T V)) * 2/sqrt(d)) -> proj."""

    def __init__(self, dim: int, num_heads: int, pos_size: int, neuron: dict, value_ratio: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.s_pos_embed = nn.Parameter(torch.zeros(1, dim, pos_size * pos_size))
        self.t_pos_embeds = nn.ParameterList(
            nn.Parameter(torch.zeros(1, dim, pos_size * pos_size)) for _ in range(4))
        self.head_spike = MultiSpikeNeuron(**neuron)
        self.q_conv = conv_bn(dim, dim)
        self.q_spike = MultiSpikeNeuron(**neuron)
        self.k_conv = conv_bn(dim, dim)
        self.k_spike = MultiSpikeNeuron(**neuron)
        self.v_conv = conv_bn(dim, dim * value_ratio)
        self.v_spike = MultiSpikeNeuron(**neuron)
        self.attn_spike = MultiSpikeNeuron(**neuron)
        self.proj_conv = conv_bn(dim * value_ratio, dim)

    def forward(self, x: torch.Tensor, branch: str) -> torch.Tensor:  # (T, B, C, H, W)
        t, b, c, h, w = x.shape
        pos = self.s_pos_embed if branch == "search" else step_pos_embed(self.t_pos_embeds, t)
        x = self.head_spike((x.flatten(3) + pos).reshape(t, b, c, h, w))
        q = split_heads(self.q_spike(apply_per_step(self.q_conv, x)).flatten(3), self.num_heads)
        k = split_heads(self.k_spike(apply_per_step(self.k_conv, x)).flatten(3), self.num_heads)
        v = split_heads(self.v_spike(apply_per_step(self.v_conv, x)).flatten(3), self.num_heads)
        out = merge_heads(retrieve(q, k.transpose(-2, -1) @ v, self.scale))  # (T, B, 4C, N)
        out = self.attn_spike(out.reshape(t, b, -1, h, w))
        return apply_per_step(self.proj_conv, out)


class TransformerBlock(nn.Module):
    """MS_Block: x + SepConv_k3(x); x + Attention(x); x + MLP(x). Real-valued residual stream."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, pos_size: int, neuron: dict):
        super().__init__()
        self.conv = SepConv(dim, 3, neuron)
        self.attn = SpikingLinearAttention(dim, num_heads, pos_size, neuron)
        self.mlp = SpikingMLP(dim, dim * mlp_ratio, neuron)

    def forward(self, x: torch.Tensor, branch: str = "search") -> torch.Tensor:
        x = x + self.conv(x)
        x = x + self.attn(x, branch)
        return x + self.mlp(x)
