"""Spike recording: forward hooks on every neuron call, named `<module path>@<call index>`.

The naming and statistics follow the official fixtures (spec fixtures README): per call the
integer spike count per time step, per (time step, channel), the element count and the shape.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from .neuron import MultiSpikeNeuron


@dataclass
class SpikeStats:
    """Integer spike statistics of one neuron call (time-first layout)."""

    t_counts: torch.Tensor  # (T,) int64
    c_counts: torch.Tensor  # (T, C) int64, C = axis 2 for 4-/5-D outputs, axis 1 for 3-D
    numel: int
    shape: tuple[int, ...]


def call_stats(out: torch.Tensor, max_value: int) -> SpikeStats:
    """Statistics of one neuron output (values s/D, time first)."""
    counts = torch.round(out.detach() * max_value).to(torch.int64)
    caxis = 2 if counts.dim() >= 4 else 1
    reduce = [d for d in range(1, counts.dim()) if d != caxis]
    c_counts = counts.sum(dim=reduce) if reduce else counts
    return SpikeStats(counts.flatten(1).sum(1), c_counts, counts.numel(), tuple(counts.shape))


@contextlib.contextmanager
def record_spikes(model: nn.Module, prefix: str = "") -> Iterator[dict[str, SpikeStats]]:
    """Record every neuron call of `model` while the context is open (dict filled in call order)."""
    records: dict[str, SpikeStats] = {}
    calls: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def fn(module: MultiSpikeNeuron, _inp, out: torch.Tensor) -> None:
            k = calls.get(name, 0)
            calls[name] = k + 1
            records[f"{name}@{k}"] = call_stats(out, module.max_value)
        return fn

    for name, module in model.named_modules():
        if isinstance(module, MultiSpikeNeuron):
            handles.append(module.register_forward_hook(hook(prefix + name)))
    try:
        yield records
    finally:
        for h in handles:
            h.remove()
