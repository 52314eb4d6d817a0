"""Which model a command runs when the user names no checkpoint: the shipped demo, else procedural weights."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from spiketrack.checkpoint import load_checkpoint, load_model
from spiketrack.models import build_model
from spiketrack.models.procedural import load_procedural_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "tiny_demo.pt"


@dataclass
class ResolvedModel:
    """A model ready for inference and a one-line description of where its weights came from."""

    model: nn.Module
    weights: str
    checkpoint: Path | None


def resolve_model(checkpoint: str | Path | None = None, variant: str | None = None) -> ResolvedModel:
    """Load `checkpoint`; without one, the shipped demo checkpoint (if `variant` is unset or equal)
    or, failing that, procedural (untrained) weights — the description says so."""
    if checkpoint is not None:
        model = load_model(checkpoint, variant)
        meta = load_checkpoint(checkpoint).meta
        return ResolvedModel(model, meta.get("weights", f"checkpoint {checkpoint}"), Path(checkpoint))
    if DEFAULT_CHECKPOINT.is_file() and variant in (None, load_checkpoint(DEFAULT_CHECKPOINT).variant):
        model = load_model(DEFAULT_CHECKPOINT)
        return ResolvedModel(model, f"shipped demo checkpoint {DEFAULT_CHECKPOINT.name}", DEFAULT_CHECKPOINT)
    name = variant or "tiny"
    model = load_procedural_weights(build_model(name))
    return ResolvedModel(model, f"PROCEDURAL weights for {name} (untrained, spec §17 generator; "
                                "boxes are not meaningful)", None)
