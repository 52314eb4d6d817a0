"""Deterministic procedural weights and inputs (spec §17): the official fixtures' generator.

Used to reproduce the fixtures and as the stand-in weights of variants without a checkpoint.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def fnv1a64(text: str) -> int:
    """FNV-1a 64-bit hash of the UTF-8 bytes."""
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) % (1 << 64)
    return h


def uniform_pm1(name: str, n: int) -> np.ndarray:
    """Counter-based uniform stream in [-1, 1) (SplitMix64 finaliser of h + (i+1)*golden), float64."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(name)) + np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return 2.0 * ((z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53) - 1.0


def procedural_value(key: str, shape: tuple[int, ...], bn_prefixes: set[str]) -> np.ndarray:
    """Value of one state-dict entry by the §17 per-key rule (first matching rule wins)."""
    prefix, _, last = key.rpartition(".")
    n = math.prod(shape)
    if last == "num_batches_tracked":
        return np.zeros(shape, dtype=np.int64)
    r = uniform_pm1(key, n)
    is_bn = prefix in bn_prefixes
    if last == "decay":
        v = r
    elif "pos_embed" in key:
        v = 0.5 * r
    elif is_bn and last == "weight":
        v = 1.0 + 0.25 * r
    elif is_bn and last == "bias":
        v = 0.25 + 0.25 * r
    elif last == "running_mean":
        v = 0.1 * r
    elif last == "running_var":
        v = 1.0 + 0.5 * (r + 1) / 2
    elif last == "weight" and len(shape) >= 2:
        v = 2.0 * math.sqrt(3.0 / math.prod(shape[1:])) * r
    elif last == "bias":
        v = 0.1 * r
    else:
        raise ValueError(f"no procedural rule for key {key}")
    return v.astype(np.float32).reshape(shape)


def procedural_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Procedural tensors for every key of a state dict given its shapes."""
    bn_prefixes = {k.rpartition(".")[0] for k in shapes if k.endswith(".running_mean")}
    return {k: torch.from_numpy(procedural_value(k, tuple(s), bn_prefixes)) for k, s in shapes.items()}


def load_procedural_weights(model: nn.Module) -> nn.Module:
    """Fill `model` in place with the procedural weights of its own state-dict keys."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(procedural_state_dict(shapes), strict=True)
    return model


def procedural_inputs(num_templates: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixture inputs: templates (T, 1, 3, S, S) and search (1, 1, 3, S, S), float32."""
    def image(name: str) -> torch.Tensor:
        return torch.from_numpy((1.5 * uniform_pm1(name, 3 * size * size)).astype(np.float32)).reshape(1, 3, size, size)

    templates = torch.stack([image(f"input.template.{t}") for t in range(num_templates)])
    return templates, image("input.search")[None]
