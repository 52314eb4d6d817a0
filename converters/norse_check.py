"""Independent check of the binary expansion with norse neurons (integer graph, bit exact).

Every neuron window of `converters.binary` is simulated by norse's `LIFBoxCell` (functional
`lif_box_feed_forward_step`), one call per sub-step, with:

* `dt = 1`, `tau_mem_inv = 0.5`, `v_leak = 0`: each sub-step computes `v <- v + 0.5 (i - v)`, i.e.
  the membrane halves (exact in binary floating point) and half the input current is added;
* the window's membrane v (an integer, F fractional bits) injected once as current `i = 2 v` at
  sub-step 0 (so the membrane is v after sub-step 0), zero current afterwards;
* `reset_method = reset_subtract` (subtract the threshold on a spike) and norse's strict
  threshold `v > v_th`, with the per-sub-step threshold schedule
  `v_th = (2^(F-1) - 1, 2^(F-1), 2^(F-2), 2^(F-3))`.

Why this is exact: let r_j = 2^j v_j be the residual in membrane units. The first threshold,
`r > 2^(F-1) - 1`, is `r >= 2^(F-1)` for integers (half a spike unit, the contract's round half
up), and subtracts 2^(F-1) - 1; each later one is `r > 2^F` in residual units and subtracts one
unit 2^F. Hence spike k fires iff v >= (k - 1/2) 2^F, exactly as `binary.fire_half_up`; after a
miss the residual stays at or below the next threshold, so the train is front-loaded. All values
are integers / 2^j with |v| < 2^24: exact in float64.

norse has no neuron with a pure integrator and subtractive reset (IAF resets to v_reset; LIFBox
with tau_mem_inv dt = 1 forgets its membrane), hence the halving leak with a compensating
threshold schedule. The float graph's round-half-to-even ties need a threshold that toggles with
the spike count, which norse's fixed per-call parameters and reset-by-threshold cannot express;
this check therefore runs on the integer graph. The membrane recursion across time steps
(decay, reset by s/4) stays ours; norse simulates the firing windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from norse.torch import LIFBoxCell, LIFBoxParameters
from norse.torch.functional.lif_box import LIFBoxFeedForwardState
from norse.torch.functional.reset import reset_subtract

from converters.binary import SUBSTEPS, BinaryRun, run_binary
from converters.ir import NetworkIR

LEAK = 0.5  # dt * tau_mem_inv


def norse_thresholds(frac_bits: int) -> list[float]:
    """Per-sub-step thresholds that make the halving LIF fire like the half-up IF window."""
    half = 2.0 ** (frac_bits - 1)
    return [half - 1.0] + [2.0 ** frac_bits * 2.0 ** -j for j in range(1, SUBSTEPS)]


def norse_cells(frac_bits: int) -> list[LIFBoxCell]:
    """One norse LIFBoxCell per sub-step (same dynamics, its own threshold)."""
    def cell(th: float) -> LIFBoxCell:
        p = LIFBoxParameters(tau_mem_inv=torch.tensor(LEAK, dtype=torch.float64),
                             v_leak=torch.tensor(0.0, dtype=torch.float64),
                             v_th=torch.tensor(th, dtype=torch.float64), reset_method=reset_subtract)
        return LIFBoxCell(p, dt=1.0)
    return [cell(th) for th in norse_thresholds(frac_bits)]


@torch.no_grad()
def norse_fire(v: torch.Tensor, attrs: dict[str, Any]) -> torch.Tensor:
    """Binary trains (SUBSTEPS, ...) of one window, simulated by norse from the integer membrane v."""
    current = 2.0 * v.to(torch.float64)
    state = LIFBoxFeedForwardState(v=torch.zeros_like(current))
    trains = []
    for j, cell in enumerate(norse_cells(attrs["f_in"])):
        z, state = cell(current if j == 0 else torch.zeros_like(current), state)
        trains.append(z > 0)
    return torch.stack(trains)


@dataclass
class NorseComparison:
    """Neuron nodes whose trains differ (id -> differing sub-step elements), and output equality."""

    neurons: int
    binary_spikes: int
    mismatched: dict[str, int]
    outputs_equal: bool

    @property
    def ok(self) -> bool:
        return not self.mismatched and self.outputs_equal


def compare_with_norse(graph: NetworkIR, inputs: dict[str, torch.Tensor]) -> tuple[NorseComparison, BinaryRun]:
    """Run the integer graph's binary expansion twice, with our IF windows and with norse's (whose
    spikes then drive all later layers), and compare every train and every output."""
    ours = run_binary(graph, inputs, "fixed")
    theirs = run_binary(graph, inputs, "fixed", fire=norse_fire)
    mismatched = {nid: int((tr != theirs.trains[nid]).sum()) for nid, tr in ours.trains.items()
                  if not torch.equal(tr, theirs.trains[nid])}
    equal = all(torch.equal(ours.outputs[k], theirs.outputs[k]) for k in ours.outputs)
    spikes = sum(int(t.sum()) for t in ours.trains.values())
    return NorseComparison(len(ours.trains), spikes, mismatched, equal), theirs
