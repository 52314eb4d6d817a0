"""The project's checkpoint format: variant name + config + state dict, loaded without unpickling code."""
from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spiketrack.errors import UserError
from spiketrack.utils.atomic import atomic_path

FORMAT = "spiketrack-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: which variant, its weights, free-form metadata and extra (e.g. optimizer) state."""

    variant: str
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def torch_load(path: str | Path, trust_pickle: bool = False) -> Any:
    """torch.load with weights_only=True unless the user explicitly trusts the file; clear errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError("no such checkpoint file", path)
    if path.stat().st_size == 0:
        raise UserError("checkpoint file is empty", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if not trust_pickle and "weights_only" in str(exc):
            raise UserError("checkpoint contains pickled Python objects beyond tensors; "
                            "re-run with --trust-pickle only if you trust its origin", path) from None
        raise UserError(f"not a readable checkpoint ({str(exc).splitlines()[0]})", path) from None
    except Exception as exc:  # torch raises many types for truncated / foreign files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"not a readable checkpoint (truncated or corrupt: {first})", path) from None


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write `model` (a SpikeTrack) atomically in the project format."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "variant": model.cfg.name,
        "config": asdict(model.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
        "extra": dict(extra or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a project checkpoint (weights_only); anything else is a user error naming the file."""
    data = torch_load(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError("not a spiketrack checkpoint (official checkpoints must first go through "
                        "`spiketrack import-official`)", path)
    if data.get("version") != VERSION:
        raise UserError(f"unsupported checkpoint version {data.get('version')} (expected {VERSION})", path)
    return Checkpoint(data["variant"], data["state_dict"], data.get("meta", {}), data.get("extra", {}))


def load_model(path: str | Path, variant: str | None = None) -> nn.Module:
    """Build the checkpoint's variant and load its weights; `variant`, if given, must match."""
    from spiketrack.models import build_model

    ckpt = load_checkpoint(path)
    if variant is not None and variant != ckpt.variant:
        raise UserError(f"checkpoint is variant '{ckpt.variant}', not '{variant}'", path)
    model = build_model(ckpt.variant)
    check_state_dict(model.state_dict(), ckpt.state_dict, path)
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval()


def check_state_dict(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], path: str | Path) -> None:
    """Missing, unexpected or wrongly shaped keys are one clear error listing them."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(expected) & set(got) if tuple(expected[k].shape) != tuple(got[k].shape))
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            problems.append(f"{len(keys)} {label} key(s): {', '.join(keys[:5])}{more}")
    if problems:
        raise UserError("; ".join(problems), path)
