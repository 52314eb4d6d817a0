"""SDTv3 'Efficient Spiking Transformer' backbone with six memory-retrieval points (spec §5, §6, §9).

One definition serves the joint forward, the template encoder and the per-frame search step:
the stages are walked in order; after each insertion point the template stream yields a
memory and the search stream reads it.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from .config import ModelConfig
from .conv_blocks import ConvBlock, Downsample
from .attention import TransformerBlock
from .retrieval import MemoryRetrieval


class SDTv3Backbone(nn.Module):
    """Shared-weight backbone; templates run on the time axis (T steps), search at one step."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        e0, e1, e2, e3 = cfg.embed_dims
        p, heads, ratio = cfg.feat_size, cfg.num_heads, cfg.mlp_ratio
        neuron = {"max_value": cfg.max_spike, "reset": cfg.reset}
        self.downsample1_1 = Downsample(3, e0 // 2, 7, 2, first=True, neuron=neuron)
        self.ConvBlock1_1 = nn.ModuleList([ConvBlock(e0 // 2, neuron, ratio)])
        self.downsample1_2 = Downsample(e0 // 2, e0, 3, 2, first=False, neuron=neuron)
        self.ConvBlock1_2 = nn.ModuleList([ConvBlock(e0, neuron, ratio)])
        self.downsample2 = Downsample(e0, e1, 3, 2, first=False, neuron=neuron)
        self.ConvBlock2_1 = nn.ModuleList([ConvBlock(e1, neuron, ratio)])
        self.ConvBlock2_2 = nn.ModuleList([ConvBlock(e1, neuron, ratio)])
        self.downsample3 = Downsample(e1, e2, 3, 2, first=False, neuron=neuron)
        self.block3 = nn.ModuleList(TransformerBlock(e2, heads, ratio, p, neuron) for _ in range(6))
        self.downsample4 = Downsample(e2, e3, 3, 1, first=False, neuron=neuron)
        self.block4 = nn.ModuleList(TransformerBlock(e3, heads, ratio, p, neuron) for _ in range(2))
        self.mrm = nn.ModuleList(MemoryRetrieval(c, heads, ratio, p, cfg.num_templates, neuron)
                                 for c in cfg.memory_dims)

    def segments(self) -> Iterator[list[nn.Module]]:
        """The stage modules between consecutive memory-retrieval points (six segments)."""
        yield [self.downsample1_1, self.ConvBlock1_1[0], self.downsample1_2]
        yield [self.ConvBlock1_2[0], self.downsample2]
        yield [self.ConvBlock2_1[0], self.ConvBlock2_2[0], self.downsample3]
        yield list(self.block3[:3])
        yield [*self.block3[3:], self.downsample4]
        yield list(self.block4)

    @staticmethod
    def _run(modules: list[nn.Module], x: torch.Tensor, branch: str) -> torch.Tensor:
        for m in modules:
            x = m(x, branch) if isinstance(m, TransformerBlock) else m(x)
        return x

    def encode_templates(self, templates: torch.Tensor) -> list[torch.Tensor]:
        """Templates (T, B, 3, S, S) -> six memories (T, B, h, d, dv); the template encoder."""
        memories = []
        z = templates
        for modules, mrm in zip(self.segments(), self.mrm):
            z = self._run(modules, z, "template")
            memories.append(mrm.retriever.memory(z))
        return memories

    def forward_search(self, search: torch.Tensor, memories: list[torch.Tensor]) -> torch.Tensor:
        """Search (1, B, 3, S, S) + cached memories -> stride-16 features (1, B, E3, F, F)."""
        x = search
        for modules, mrm, memory in zip(self.segments(), self.mrm, memories, strict=True):
            x = mrm(self._run(modules, x, "search"), memory)
        return x
