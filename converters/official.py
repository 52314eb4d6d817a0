"""Import an official SpikeTrack checkpoint (`{'net': state_dict}` or a bare state dict).

Our module tree mirrors the official one, so every official key maps to the key of the same
name; the import proves it key by key (nothing missing, unexpected or misshaped), records which
parameters no forward pass reads (spec §15) and writes the project's checkpoint format.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from spiketrack.checkpoint import check_state_dict, save_checkpoint, torch_load
from spiketrack.errors import UserError
from spiketrack.models import VARIANTS, SpikeTrack, build_model, get_config
from spiketrack.models.spiketrack import unused_parameter_names

WRAPPER_KEYS = ("net", "state_dict", "model")
DDP_PREFIX = "module."


@dataclass
class ImportReport:
    """What the import did: key counts, the parameters that inference never reads, the output."""

    variant: str
    mapped: int
    unused: list[str]
    out: Path


def unwrap_state_dict(data: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside an official checkpoint; DDP 'module.' prefixes are stripped."""
    if isinstance(data, dict):
        for key in WRAPPER_KEYS:
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError("no state dict of tensors found (expected {'net': state_dict} or a bare state dict)", path)
    if all(k.startswith(DDP_PREFIX) for k in data):
        data = {k[len(DDP_PREFIX):]: v for k, v in data.items()}
    return data


def variant_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of a variant, without allocating its weights."""
    with torch.device("meta"):
        model = SpikeTrack(get_config(variant))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_variant(state: dict[str, torch.Tensor]) -> str | None:
    """The official variant whose keys and shapes a state dict matches exactly, if any."""
    got = {k: tuple(v.shape) for k, v in state.items()}
    for name in VARIANTS:
        if name != "tiny" and variant_shapes(name) == got:
            return name
    return None


def import_official(src: str | Path, variant: str, out: str | Path, trust_pickle: bool = False) -> ImportReport:
    """Read an official checkpoint for `variant`, check every key, write our checkpoint to `out`."""
    src = Path(src)
    state = unwrap_state_dict(torch_load(src, trust_pickle=trust_pickle), src)
    model = build_model(variant)
    try:
        check_state_dict(model.state_dict(), state, src)
    except UserError as err:
        other = guess_variant(state)
        hint = f" — it matches variant '{other}'" if other and other != variant else ""
        raise UserError(f"does not match variant '{variant}'{hint}: {err.message}", src) from None
    model.load_state_dict(state, strict=True)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    unused = unused_parameter_names(model.cfg)
    meta = {"source": "official", "source_file": src.name, "source_sha256": digest,
            "weights": f"official SpikeTrack checkpoint {src.name}", "unused_parameters": unused}
    save_checkpoint(out, model, meta=meta)
    return ImportReport(variant, len(state), unused, Path(out))
