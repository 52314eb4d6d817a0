"""Multi-spike neuron (official `mem_update` + `MultiSpike`): integer spikes 0..D, soft reset, decay."""
from __future__ import annotations

import math

import torch
from torch import nn

MAX_TIMESTEPS = 4  # three decay factors -> four steps (the official code stops at 3, spec §16.5)


class _RoundClampSTE(torch.autograd.Function):
    """round(clamp(m, 0, D)) with the clipped straight-through gradient (spec §3.3)."""

    @staticmethod
    def forward(ctx, mem: torch.Tensor, max_value: int) -> torch.Tensor:
        ctx.save_for_backward(mem)
        ctx.max_value = max_value
        return torch.round(torch.clamp(mem, 0, max_value))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mem,) = ctx.saved_tensors
        inside = (mem >= 0) & (mem <= ctx.max_value)
        return grad * inside.to(grad.dtype), None


def spike_count(mem: torch.Tensor, max_value: int) -> torch.Tensor:
    """Integer spike count s = round_half_even(clamp(m, 0, D)) as a float tensor (differentiable STE)."""
    return _RoundClampSTE.apply(mem, max_value)


class MultiSpikeNeuron(nn.Module):
    """Time-first multi-spike LIF neuron; input and output `(T, ...)`, output values s/D.

    State starts at zero on every call (no persistent membrane), so one instance may serve
    several streams. `decay[t-1]` (through a sigmoid) scales the membrane entering step t.
    """

    def __init__(self, max_value: int = 4, reset: str = "normalized"):
        super().__init__()
        if reset not in ("normalized", "integer"):
            raise ValueError(f"reset must be 'normalized' or 'integer', got {reset!r}")
        self.max_value = max_value
        self.reset = reset
        self.decay = nn.Parameter(torch.full((MAX_TIMESTEPS - 1,), math.log(0.25 / 0.75)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, ...)
        steps = x.shape[0]
        if steps > MAX_TIMESTEPS:
            raise ValueError(f"multi-spike neuron supports at most {MAX_TIMESTEPS} steps, got {steps}")
        norm = float(self.max_value)
        mem = x[0]
        out = [spike_count(mem, self.max_value) / norm]
        for t in range(1, steps):
            reset = out[-1].detach() if self.reset == "normalized" else out[-1].detach() * norm
            mem = (mem - reset) * self.decay[t - 1].sigmoid() + x[t]
            out.append(spike_count(mem, self.max_value) / norm)
        return torch.stack(out) if steps > 1 else out[0].unsqueeze(0)

    def extra_repr(self) -> str:
        return f"max_value={self.max_value}, reset={self.reset}"
