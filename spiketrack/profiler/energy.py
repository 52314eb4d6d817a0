"""Energy models: pure functions of (counts, hardware profile) -> per-layer joules + formula text.

Three models, each stating its formula and assumptions in `EnergyBreakdown.formula`:

* `paper`        — the spike-driven-transformer convention (spec §12): MACs on dense inputs at
                   E_MAC, spike-driven accumulates at E_AC; nothing else is charged.
* `neuromorphic` — a neuromorphic chip: synaptic ops, neuron updates, routed spikes, host ops,
                   plus static power over the time the network is held.
* `memory_aware` — compute plus memory traffic (weights, inputs, neuron state), in the manner of
                   Lemaire et al. 2022 and Yan et al. 2024 (see `energy_memory_aware`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from spiketrack.profiler.counts import CountsRecord, LayerCounts
from spiketrack.profiler.profiles import HardwareProfile

MODEL_FIGURES: dict[str, tuple[str, ...]] = {
    "paper": ("energy.e_mac", "energy.e_ac"),
    "neuromorphic": ("energy.e_synop", "energy.e_neuron_update", "energy.e_spike_routed",
                     "energy.e_host_op", "power.static_power"),
    "memory_aware": ("energy.e_mac", "energy.e_ac", "energy.e_host_op", "memory.word_bits",
                     "memory.e_weight_read", "memory.weight_bits", "memory.e_input_read",
                     "memory.spike_bits", "memory.e_state_read", "memory.e_state_write",
                     "memory.state_bits"),
}

PAPER_FORMULA = (
    "E = E_MAC * (dense_macs + attention_ops of non-spike inputs)"
    " + E_AC * (synops + attention_ops of spike inputs). "
    "Spike-driven transformer convention (spec §12): integer spikes s count s accumulates "
    "(synops = sum of spike value x fan-out); neuron updates, host ops, memory traffic and "
    "static power are not charged; layer location is ignored."
)
NEUROMORPHIC_FORMULA = (
    "E = sum over layers on 'neuro': (synops + attention_ops + dense_macs) * E_synop"
    " + neuron_updates * E_neuron_update + spikes * E_spike_routed + host_ops * E_host_op;"
    " layers on 'host': (dense_macs + synops + attention_ops + host_ops + neuron_updates) * E_host_op;"
    " plus static_power * sim_time_s * chips. "
    "Assumptions: a dense (non-spike) input on the chip is sent as graded spikes, one synop per MAC; "
    "attention products are mapped to synops; spikes and synops count integer spike values, "
    "exact for binary-spike chips (a count s = s unit spikes) and an upper bound for graded spikes; "
    "every neuron update is charged at the profile's single E_neuron_update; spike routing is "
    "charged once per spike (no mesh hops); a host neuron update is one host op."
)
MEMORY_FORMULA = (
    "E = compute + weight_read + input_read + operand_read + state_access, per layer, with "
    "W = e_weight_read*weight_bits/word_bits, Is = e_input_read*spike_bits/word_bits, "
    "Ia = e_input_read*state_bits/word_bits, Sr = e_state_read*state_bits/word_bits, "
    "Sw = e_state_write*state_bits/word_bits; "
    "compute = dense_macs*E_MAC + synops*E_AC + attention_ops*(E_AC if spike input else E_MAC)"
    " + neuron_updates*(E_MAC + 2*E_AC) + host_ops*E_host_op; "
    "weight_read = (synops + dense_macs)*W; "
    "input_read = synops*Is + dense_macs*Ia + attention_ops*(Is if spike input else Ia); "
    "operand_read = attention_ops*Sr; "
    "state_access = (synops + neuron_updates + [attention_ops if spike input])*(Sr + Sw). "
    "Assumptions (after Lemaire et al. 2022 and Yan et al. 2024): no data reuse, every operation "
    "fetches its weight and input from SRAM; spike-driven (event) accumulation is a scatter, so "
    "each synop reads and writes its target accumulator, while a dense MAC accumulates in a "
    "register; each neuron update reads and writes its membrane once and costs one MAC "
    "(decay*(m - o) + x) plus two adds (reset, threshold/quantize compare); the second operand of "
    "an attention product is read from state memory; writes of dense outputs, DRAM traffic and "
    "static power are not charged; layer location is ignored."
)


@dataclass(frozen=True)
class LayerEnergy:
    """Joules per component for one layer."""

    layer_id: str
    components: dict[str, float]

    @property
    def total_j(self) -> float:
        return sum(self.components.values())


@dataclass(frozen=True)
class EnergyBreakdown:
    """Result of one energy model on one counts record and one profile."""

    model: str
    profile: str
    formula: str
    frames: int
    layers: list[LayerEnergy]
    shared: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, float] = field(default_factory=dict)

    @property
    def total_j(self) -> float:
        return sum(layer.total_j for layer in self.layers) + sum(self.shared.values())

    @property
    def per_frame_j(self) -> float:
        return self.total_j / self.frames

    def component_totals(self) -> dict[str, float]:
        """Joules per component summed over layers, plus shared terms (e.g. static)."""
        totals: dict[str, float] = {}
        for layer in self.layers:
            for name, joules in layer.components.items():
                totals[name] = totals.get(name, 0.0) + joules
        for name, joules in self.shared.items():
            totals[name] = totals.get(name, 0.0) + joules
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "profile": self.profile, "formula": self.formula,
                "frames": self.frames, "parameters": self.parameters,
                "total_j": self.total_j, "per_frame_j": self.per_frame_j,
                "components_j": self.component_totals(), "shared_j": self.shared,
                "layers": [{"layer_id": l.layer_id, "total_j": l.total_j, "components_j": l.components}
                           for l in self.layers]}


def energy_paper(counts: CountsRecord, profile: HardwareProfile) -> EnergyBreakdown:
    """E_MAC x dense MACs + E_AC x spike-driven ops: the convention behind the paper's 1/26 claim."""
    e_mac, e_ac = profile.si("energy.e_mac"), profile.si("energy.e_ac")

    def layer_energy(layer: LayerCounts) -> dict[str, float]:
        spike_att = layer.attention_ops if layer.input_is_spike else 0
        dense_att = layer.attention_ops - spike_att
        return {"mac": (layer.dense_macs + dense_att) * e_mac, "ac": (layer.synops + spike_att) * e_ac}

    return _breakdown("paper", counts, profile, PAPER_FORMULA, layer_energy)


def energy_neuromorphic(counts: CountsRecord, profile: HardwareProfile, sim_time_s: float,
                        chips: int = 1) -> EnergyBreakdown:
    """Synaptic ops, neuron updates, routed spikes and host ops, plus static power over `sim_time_s`."""
    if sim_time_s < 0 or chips < 1:
        raise ValueError("sim_time_s must be >= 0 and chips >= 1")
    e_syn, e_neu = profile.si("energy.e_synop"), profile.si("energy.e_neuron_update")
    e_spk, e_host = profile.si("energy.e_spike_routed"), profile.si("energy.e_host_op")
    static = profile.si("power.static_power") * sim_time_s * chips

    def layer_energy(layer: LayerCounts) -> dict[str, float]:
        if layer.location == "host":
            ops = layer.dense_macs + layer.synops + layer.attention_ops + layer.host_ops + layer.neuron_updates
            return {"synop": 0.0, "neuron": 0.0, "spike": 0.0, "host": ops * e_host}
        return {"synop": (layer.synops + layer.attention_ops + layer.dense_macs) * e_syn,
                "neuron": layer.neuron_updates * e_neu, "spike": layer.spikes * e_spk,
                "host": layer.host_ops * e_host}

    return _breakdown("neuromorphic", counts, profile, NEUROMORPHIC_FORMULA, layer_energy,
                      shared={"static": static}, parameters={"sim_time_s": sim_time_s, "chips": chips})


def energy_memory_aware(counts: CountsRecord, profile: HardwareProfile) -> EnergyBreakdown:
    """Compute plus SRAM traffic for weights, inputs and neuron state (formula in `MEMORY_FORMULA`).

    Follows the accounting style of E. Lemaire et al., "An analytical estimation of spiking
    neural networks energy efficiency", ICONIP 2022 (arXiv:2210.13107) and Z. Yan et al.,
    "Reconsidering the energy efficiency of spiking neural networks" (arXiv:2409.08290):
    every synaptic event fetches its weight and updates its target potential in memory.
    The exact terms and assumptions are ours and are spelled out in `MEMORY_FORMULA`.
    """
    e_mac, e_ac, e_host = (profile.si(k) for k in ("energy.e_mac", "energy.e_ac", "energy.e_host_op"))
    word = profile.si("memory.word_bits")
    per_bit = {k: profile.si(f"memory.{k}") / word for k in ("e_weight_read", "e_input_read",
                                                             "e_state_read", "e_state_write")}
    w = per_bit["e_weight_read"] * profile.si("memory.weight_bits")
    i_spike = per_bit["e_input_read"] * profile.si("memory.spike_bits")
    state_bits = profile.si("memory.state_bits")
    i_dense = per_bit["e_input_read"] * state_bits
    s_read, s_write = per_bit["e_state_read"] * state_bits, per_bit["e_state_write"] * state_bits

    def layer_energy(layer: LayerCounts) -> dict[str, float]:
        spike = layer.input_is_spike
        att = layer.attention_ops
        scatter = layer.synops + layer.neuron_updates + (att if spike else 0)
        return {
            "compute": (layer.dense_macs * e_mac + layer.synops * e_ac + att * (e_ac if spike else e_mac)
                        + layer.neuron_updates * (e_mac + 2 * e_ac) + layer.host_ops * e_host),
            "weight_read": (layer.synops + layer.dense_macs) * w,
            "input_read": layer.synops * i_spike + layer.dense_macs * i_dense + att * (i_spike if spike else i_dense),
            "operand_read": att * s_read,
            "state_access": scatter * (s_read + s_write),
        }

    return _breakdown("memory_aware", counts, profile, MEMORY_FORMULA, layer_energy)


def _breakdown(model: str, counts: CountsRecord, profile: HardwareProfile, formula: str,
               layer_energy: Callable[[LayerCounts], dict[str, float]],
               shared: dict[str, float] | None = None,
               parameters: dict[str, float] | None = None) -> EnergyBreakdown:
    """Apply `layer_energy` to every layer and package the result."""
    layers = [LayerEnergy(layer.layer_id, layer_energy(layer)) for layer in counts.layers]
    return EnergyBreakdown(model, profile.name, formula, counts.frames, layers,
                           shared or {}, parameters or {})


@dataclass(frozen=True)
class ProfileResult:
    """Every energy model the profile supports, evaluated on one counts record."""

    counts: CountsRecord
    profile: HardwareProfile
    breakdowns: list[EnergyBreakdown]
    skipped: dict[str, str]

    def breakdown(self, model: str) -> EnergyBreakdown | None:
        return next((b for b in self.breakdowns if b.model == model), None)


def evaluate_profile(counts: CountsRecord, profile: HardwareProfile, sim_time_s: float,
                     chips: int = 1) -> ProfileResult:
    """Run each model whose figures the profile has; the others are listed with the missing figures."""
    runners: dict[str, Callable[[], EnergyBreakdown]] = {
        "paper": lambda: energy_paper(counts, profile),
        "neuromorphic": lambda: energy_neuromorphic(counts, profile, sim_time_s, chips),
        "memory_aware": lambda: energy_memory_aware(counts, profile),
    }
    breakdowns, skipped = [], {}
    for model, run in runners.items():
        missing = profile.missing(MODEL_FIGURES[model])
        if missing:
            skipped[model] = "profile lacks " + ", ".join(missing)
        else:
            breakdowns.append(run())
    return ProfileResult(counts, profile, breakdowns, skipped)
