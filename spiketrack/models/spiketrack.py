"""The SpikeTrack tracking network: backbone + MRMs (`encoder`) and the spiking head (`decoder`)."""
from __future__ import annotations

import torch
from torch import nn

from .backbone import SDTv3Backbone
from .config import ModelConfig
from .head import CenterHead


class SpikeTrack(nn.Module):
    """State-dict keys equal the official checkpoint's `net` keys (`encoder.*`, `decoder.*`)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SDTv3Backbone(cfg)
        neuron = {"max_value": cfg.max_spike, "reset": cfg.reset}
        self.decoder = CenterHead(cfg.embed_dims[3], cfg.head_channels, neuron)

    def encode_templates(self, templates: torch.Tensor) -> list[torch.Tensor]:
        """Template encoder: normalized templates (T, B, 3, S, S) -> six memories, cached by the tracker."""
        return self.encoder.encode_templates(templates)

    def track_step(self, search: torch.Tensor, memories: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-frame step: search crop (1, B, 3, S, S) + memories -> score/size/offset maps (B, ., F, F)."""
        return self.decoder(self.encoder.forward_search(search, memories))

    def forward(self, templates: torch.Tensor, search: torch.Tensor) -> dict[str, torch.Tensor]:
        """Joint forward (training form); numerically identical to encode + step."""
        return self.track_step(search, self.encode_templates(templates))


def unused_parameter_names(cfg) -> list[str]:
    """Parameters no forward pass of this variant reads (spec §15); kept for key compatibility only.

    Decays of neurons that only ever see one step (all of them when T = 1), the gate when T = 1,
    and the template positional tables beyond T - 1.
    """
    t = cfg.num_templates
    with torch.device("meta"):
        names = [n for n, _ in SpikeTrack(cfg).named_parameters()]

    def unused(name: str) -> bool:
        if name.endswith(".decay"):
            one_step = (name.startswith("decoder.") or name.endswith("gate_spike.decay")
                        or (".mrm." in name and ".mlp.fc" in name))
            return t == 1 or one_step
        if ".t_pos_embeds." in name:
            return int(name.rsplit(".", 1)[1]) >= t
        return ".retriever.gate." in name and t == 1

    return [n for n in names if unused(n)]
