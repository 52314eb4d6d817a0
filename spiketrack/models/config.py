"""Model configuration and the registry of named variants (paper names plus our small `tiny`)."""
from __future__ import annotations

from dataclasses import dataclass

from spiketrack.errors import UserError


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a SpikeTrack variant's architecture."""

    name: str
    embed_dims: tuple[int, int, int, int]  # E0..E3 stage widths
    search_size: int  # S: template and search crops are both S x S
    num_templates: int  # T: templates on the time axis
    head_channels: int
    num_heads: int = 8
    mlp_ratio: int = 4
    max_spike: int = 4  # D: integer spikes 0..D
    reset: str = "normalized"  # official quirk (spec §16.6): subtract s/D; "integer" subtracts s

    @property
    def feat_size(self) -> int:
        """F = P: side of the stride-16 feature map and of the positional tables."""
        return self.search_size // 16

    @property
    def memory_dims(self) -> tuple[int, ...]:
        """Widths C of mrm.0 .. mrm.5."""
        e0, e1, e2, e3 = self.embed_dims
        return (e0, e1, e2, e2, e3, e3)


_S = (32, 64, 128, 192)
_L = (64, 128, 256, 360)

VARIANTS: dict[str, ModelConfig] = {
    "s256_t1": ModelConfig("s256_t1", _S, 256, 1, 192),
    "s256_t3": ModelConfig("s256_t3", _S, 256, 3, 192),
    "b256_t1": ModelConfig("b256_t1", _L, 256, 1, 256),
    "b256_t3": ModelConfig("b256_t3", _L, 256, 3, 256),
    "b384_t1": ModelConfig("b384_t1", _L, 384, 1, 256),
    "b384_t3": ModelConfig("b384_t3", _L, 384, 3, 256),
    # Ours: trains and simulates on 2 CPU cores (128 px crops, 8x8 feature map).
    "tiny": ModelConfig("tiny", (16, 32, 64, 96), 128, 1, 64),
}


def get_config(name: str) -> ModelConfig:
    """Look up a variant by name; unknown names are a user error listing the known ones."""
    if name not in VARIANTS:
        raise UserError(f"unknown variant '{name}' (known: {', '.join(VARIANTS)})")
    return VARIANTS[name]
