"""CenterNet-style spiking head (score / offset / size towers) and box decoding (spec §8)."""
from __future__ import annotations

import torch
from torch import nn

from .neuron import MultiSpikeNeuron
from .norm import apply_per_step, conv_bn


class CenterHead(nn.Module):
    """Shared input spike, then three towers conv3x3+BN -> spike (x4, channels halving) -> 1x1 conv."""

    TOWERS = {"ctr": 1, "offset": 2, "size": 2}

    def __init__(self, inplanes: int, channels: int, neuron: dict):
        super().__init__()
        self.spike = MultiSpikeNeuron(**neuron)
        widths = [inplanes, channels, channels // 2, channels // 4, channels // 8]
        for tower, n_out in self.TOWERS.items():
            for i in range(4):
                self.add_module(f"conv{i + 1}_{tower}", conv_bn(widths[i], widths[i + 1], 3, frozen=False, bias=True))
                self.add_module(f"{tower}{i + 1}_spike", MultiSpikeNeuron(**neuron))
            self.add_module(f"conv5_{tower}", nn.Conv2d(widths[4], n_out, 1))

    def _tower(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 5):
            x = getattr(self, f"{name}{i}_spike")(apply_per_step(getattr(self, f"conv{i}_{name}"), x))
        return apply_per_step(getattr(self, f"conv5_{name}"), x).mean(0)  # average over time

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # (T, B, C, F, F)
        x = self.spike(x)
        score = self._tower("ctr", x).sigmoid().clamp(1e-4, 1 - 1e-4)
        size = self._tower("size", x).sigmoid().clamp(1e-4, 1 - 1e-4)
        return {"score_map": score, "size_map": size, "offset_map": self._tower("offset", x)}


def boxes_at(size_map: torch.Tensor, offset_map: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, 4) normalized (cx, cy, w, h) decoded at flat cell `index`: centre = (cell + offset) / F."""
    b, _, f, _ = size_map.shape
    batch = torch.arange(b, device=size_map.device)
    iy, ix = index // f, index % f
    offset = offset_map[batch, :, iy, ix]  # (B, 2)
    size = size_map[batch, :, iy, ix]
    cx = (ix.to(offset.dtype) + offset[:, 0]) / f
    cy = (iy.to(offset.dtype) + offset[:, 1]) / f
    return torch.stack([cx, cy, size[:, 0], size[:, 1]], dim=1)


def decode_boxes(score_map: torch.Tensor, size_map: torch.Tensor,
                 offset_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Box at the first maximum of the score map: normalized (cx, cy, w, h) (B, 4) and the max (B,)."""
    flat = score_map.flatten(1)
    idx = flat.argmax(dim=1)  # first maximum on ties
    return boxes_at(size_map, offset_map, idx), flat.gather(1, idx[:, None])[:, 0]
