"""SpikeTrack models: a registry of named variants in the manner of timm / torchvision.models."""
from __future__ import annotations

from .config import VARIANTS, ModelConfig, get_config
from .head import decode_boxes
from .spiketrack import SpikeTrack


def build_model(name: str, **overrides) -> SpikeTrack:
    """Build a variant by name (s256_t1 ... b384_t3, tiny) with random init, in eval mode."""
    from dataclasses import replace

    cfg = get_config(name)
    if overrides:
        cfg = replace(cfg, **overrides)
    return SpikeTrack(cfg).eval()


__all__ = ["VARIANTS", "ModelConfig", "SpikeTrack", "build_model", "decode_boxes", "get_config"]
