"""Memory-Retrieval Module (MRM): compact template memories K^T V read by the search stream (spec §7)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SpikingMLP, merge_heads, retrieve, split_heads, step_pos_embed
from .neuron import MultiSpikeNeuron
from .norm import apply_per_step, conv_bn


def to_grid(x: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool every time step to the P x P retrieval grid (no-op at stride 16)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return apply_per_step(lambda y: F.adaptive_avg_pool2d(y, size), x)


class ChannelGate(nn.Module):
    """Scores each template step per (batch, channel) from its P^2 spatial spikes; softmax-weighted sum."""

    def __init__(self, tokens: int, neuron: dict):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv1d(tokens, tokens // 2, 1), MultiSpikeNeuron(**neuron),
                                 nn.Conv1d(tokens // 2, 1, 1))

    def forward(self, o: torch.Tensor) -> torch.Tensor:  # (T, B, Cv, P, P) -> (1, B, Cv, P, P)
        t, b, cv, p, _ = o.shape
        x = o.permute(1, 2, 3, 4, 0).reshape(b * cv, p * p, t)  # spatial positions as channels
        g = self.mlp[0](x).permute(2, 0, 1)  # (T, B*Cv, P^2/2), time first for the neuron
        g = self.mlp[2](self.mlp[1](g).permute(1, 2, 0))  # (B*Cv, 1, T)
        w = g.reshape(b, cv, t).softmax(dim=-1)
        return (o * w.permute(2, 0, 1)[..., None, None]).sum(0, keepdim=True)


class Retriever(nn.Module):
    """Template half builds memories M = K^T V; search half queries them twice (query + refinement)."""

    def __init__(self, dim: int, num_heads: int, pos_size: int, num_templates: int, neuron: dict,
                 value_ratio: int = 4):
        super().__init__()
        dv = dim * value_ratio
        self.num_heads = num_heads
        self.pos_size = pos_size
        self.scale = (dim // num_heads) ** -0.5
        self.s_pos_embed = nn.Parameter(torch.zeros(1, dim, pos_size * pos_size))
        self.t_pos_embeds = nn.ParameterList(
            nn.Parameter(torch.zeros(1, dim, pos_size * pos_size)) for _ in range(4))
        self.head_spike = MultiSpikeNeuron(**neuron)
        self.q_conv = conv_bn(dim, dim, frozen=False)
        self.k_conv = conv_bn(dim, dim, frozen=False)
        self.v_conv = conv_bn(dim, dv, frozen=False)
        self.q_spike = MultiSpikeNeuron(**neuron)  # shared by the C-wide query and the 4C-wide refinement
        self.k_spike = MultiSpikeNeuron(**neuron)
        self.v_spike = MultiSpikeNeuron(**neuron)
        self.attn_spike = MultiSpikeNeuron(**neuron)
        self.proj_conv = conv_bn(dv, dim, frozen=False)
        self.gate = ChannelGate(pos_size * pos_size, neuron)
        self.gate_spike = MultiSpikeNeuron(**neuron)
        self.seg_responder_dw = nn.ModuleList(
            conv_bn(dv, dv, 3, groups=dv, frozen=False) for _ in range(num_templates))
        self.seg_responder_pw = nn.ModuleList(conv_bn(dv, dim, frozen=False) for _ in range(num_templates))
        self.fuser = conv_bn(dim, dim, frozen=False)
        self.seg_dw_spike = MultiSpikeNeuron(**neuron)
        self.seg_pw_spike = MultiSpikeNeuron(**neuron)
        self.fuser_spike = MultiSpikeNeuron(**neuron)

    def memory(self, templates: torch.Tensor) -> torch.Tensor:
        """Template stream (T, B, C, H, W) -> memories M (T, B, h, d, dv)."""
        z = to_grid(templates, self.pos_size)
        t, b, c, p, _ = z.shape
        z = self.head_spike((z.flatten(3) + step_pos_embed(self.t_pos_embeds, t)).reshape(z.shape))
        v = split_heads(self.v_spike(apply_per_step(self.v_conv, z)).flatten(3), self.num_heads)
        k = split_heads(self.k_spike(apply_per_step(self.k_conv, z)).flatten(3), self.num_heads)
        return k.transpose(-2, -1) @ v

    def forward(self, search: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Search stream (1, B, C, H, W) + memories (T, B, h, d, dv) -> retrieved (1, B, C, H, W)."""
        steps = memory.shape[0]
        if steps != len(self.seg_responder_dw):
            raise ValueError(f"memory has {steps} template steps, retriever expects {len(self.seg_responder_dw)}")
        x = to_grid(search, self.pos_size)
        _, b, c, p, _ = x.shape
        x = self.head_spike((x.flatten(3) + self.s_pos_embed).reshape(x.shape))
        q0 = apply_per_step(self.q_conv, x)  # (1, B, C, P, P): query short-cut
        q = split_heads(self.q_spike(q0.expand(steps, -1, -1, -1, -1)).flatten(3), self.num_heads)
        r = merge_heads(retrieve(q, memory, self.scale)).reshape(steps, b, -1, p, p)  # (T, B, Cv, P, P)
        a = self.seg_dw_spike(self._per_template(self.seg_responder_dw, self.q_spike(r)))
        a = self.seg_pw_spike(q0 + self._per_template(self.seg_responder_pw, a))
        f = self.fuser_spike(apply_per_step(self.fuser, a))
        q = split_heads(f.flatten(3), self.num_heads)
        o = self.attn_spike(merge_heads(retrieve(q, memory, self.scale)).reshape(steps, b, -1, p, p))
        if steps > 1:
            o = self.gate_spike(self.gate(o))
        o = apply_per_step(self.proj_conv, o)
        if o.shape[-2:] != search.shape[-2:]:
            o = apply_per_step(lambda y: F.interpolate(y, size=search.shape[-2:], mode="bilinear",
                                                       align_corners=False), o)
        return o

    @staticmethod
    def _per_template(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """Step t goes through its own layer t: (T, B, C, H, W)."""
        return torch.stack([layer(x[t]) for t, layer in enumerate(layers)])


class MemoryRetrieval(nn.Module):
    """MRM: search + Retriever(memories, search), then + MLP (regular BN)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, pos_size: int, num_templates: int,
                 neuron: dict):
        super().__init__()
        self.retriever = Retriever(dim, num_heads, pos_size, num_templates, neuron)
        self.mlp = SpikingMLP(dim, dim * mlp_ratio, neuron, frozen=False)

    def forward(self, search: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        search = search + self.retriever(search, memory)
        return search + self.mlp(search)
