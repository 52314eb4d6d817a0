"""Hardware profiles: YAML files of sourced figures, validated against a fixed schema.

A profile is data, not code. Every figure is a mapping
``{value: <number>, unit: <unit>, source: "<citation>"}`` with optional ``note`` (free text)
and ``estimate`` (true when the value is not a published measurement of that chip).
Figures live in four sections:

* ``energy``  — energy per operation (fixed keys, see ``SCHEMA``);
* ``power``   — static power of one chip;
* ``memory``  — access energies and word widths for the memory-aware model;
* ``reference`` — free-named figures kept for documentation (never used by a formula).

Energy models name the figures they need (``spiketrack.profiler.energy.MODEL_FIGURES``);
a profile may omit the figures of models it does not support.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spiketrack.errors import UserError

# unit -> (dimension, factor to SI: joule, watt, second, bit, 1, square metre)
UNITS: dict[str, tuple[str, float]] = {
    "fJ": ("energy", 1e-15), "pJ": ("energy", 1e-12), "nJ": ("energy", 1e-9),
    "uJ": ("energy", 1e-6), "mJ": ("energy", 1e-3), "J": ("energy", 1.0),
    "nW": ("power", 1e-9), "uW": ("power", 1e-6), "mW": ("power", 1e-3), "W": ("power", 1.0),
    "ps": ("time", 1e-12), "ns": ("time", 1e-9), "us": ("time", 1e-6), "ms": ("time", 1e-3),
    "s": ("time", 1.0),
    "bit": ("bits", 1.0), "byte": ("bits", 8.0), "KiB": ("bits", 8.0 * 1024),
    "MiB": ("bits", 8.0 * 1024**2),
    "count": ("count", 1.0),
    "mm2": ("area", 1e-6),
}

# section -> key -> (dimension, meaning). `reference` accepts any key of any dimension.
SCHEMA: dict[str, dict[str, tuple[str, str]]] = {
    "energy": {
        "e_mac": ("energy", "one multiply-accumulate on a non-spike (dense) input"),
        "e_ac": ("energy", "one accumulate (addition) driven by an input spike"),
        "e_synop": ("energy", "one synaptic operation on the neuromorphic chip (a spike reaching one synapse)"),
        "e_neuron_update": ("energy", "one neuron state update (one neuron, one timestep)"),
        "e_spike_routed": ("energy", "one spike message routed from its core to a destination core"),
        "e_host_op": ("energy", "one arithmetic operation executed on the host processor"),
    },
    "power": {
        "static_power": ("power", "static (leakage) power of one chip while it is held"),
    },
    "memory": {
        "word_bits": ("bits", "width of the memory word the access energies refer to"),
        "e_weight_read": ("energy", "read of one word of the weight memory"),
        "weight_bits": ("bits", "bits per stored weight"),
        "e_input_read": ("energy", "read of one word of the input buffer (spikes or activations)"),
        "spike_bits": ("bits", "bits per stored input spike value"),
        "e_state_read": ("energy", "read of one word of neuron-state/accumulator memory"),
        "e_state_write": ("energy", "write of one word of neuron-state/accumulator memory"),
        "state_bits": ("bits", "bits per membrane potential, accumulator or dense activation"),
    },
}
SECTIONS = (*SCHEMA, "reference")
TOP_LEVEL = ("name", "description", *SECTIONS)
FIGURE_KEYS = ("value", "unit", "source", "note", "estimate")


@dataclass(frozen=True)
class Figure:
    """One sourced figure; `si` is `value` converted to joules/watts/seconds/bits."""

    key: str
    value: float
    unit: str
    source: str
    note: str | None = None
    estimate: bool = False

    @property
    def si(self) -> float:
        return self.value * UNITS[self.unit][1]

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping for JSON reports (value as given, plus the SI value)."""
        return {"value": self.value, "unit": self.unit, "si": self.si, "source": self.source,
                "note": self.note, "estimate": self.estimate}


@dataclass(frozen=True)
class HardwareProfile:
    """A validated hardware profile: figures keyed by 'section.key'."""

    name: str
    description: str
    path: str
    figures: dict[str, Figure] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        return key in self.figures

    def missing(self, keys: tuple[str, ...]) -> list[str]:
        """The keys of `keys` this profile lacks (used to tell which energy models it supports)."""
        return [k for k in keys if k not in self.figures]

    def si(self, key: str) -> float:
        """Figure `key` in SI units; UserError naming the profile file when it is absent."""
        if key not in self.figures:
            raise UserError(f"{key}: figure missing (needed by the requested energy model)", self.path)
        return self.figures[key].si

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "path": self.path,
                "figures": {k: f.to_dict() for k, f in self.figures.items()}}


def load_profile(path: str | Path) -> HardwareProfile:
    """Read and validate a profile YAML; any schema violation raises UserError naming file and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read hardware profile: {exc.strerror}", path) from exc
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", path) from exc
    return parse_profile(data, path)


def parse_profile(data: Any, path: str | Path) -> HardwareProfile:
    """Validate an already-parsed YAML document (see `load_profile`)."""
    if not isinstance(data, dict):
        raise UserError("a hardware profile must be a mapping", path)
    _reject_unknown(data, TOP_LEVEL, "", path)
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise UserError(f"{key}: required non-empty string", path)
    figures: dict[str, Figure] = {}
    for section in SECTIONS:
        body = data.get(section)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise UserError(f"{section}: must be a mapping of figures", path)
        if section != "reference":
            _reject_unknown(body, tuple(SCHEMA[section]), f"{section}.", path)
        for key, raw in body.items():
            dotted = f"{section}.{key}"
            dimension = SCHEMA[section][key][0] if section in SCHEMA else None
            figures[dotted] = _parse_figure(raw, dotted, dimension, path)
    return HardwareProfile(data["name"], data["description"], str(path), figures)


def _reject_unknown(mapping: dict, allowed: tuple[str, ...], prefix: str, path: str | Path) -> None:
    """UserError for the first key of `mapping` that is not in `allowed`."""
    for key in mapping:
        if key not in allowed:
            raise UserError(f"{prefix}{key}: unknown key (allowed: {', '.join(allowed)})", path)


def _parse_figure(raw: Any, key: str, dimension: str | None, path: str | Path) -> Figure:
    """Validate one `{value, unit, source}` mapping; `dimension` None accepts any known unit."""
    if not isinstance(raw, dict):
        raise UserError(f"{key}: must be a mapping {{value, unit, source}}", path)
    _reject_unknown(raw, FIGURE_KEYS, f"{key}.", path)
    for required in ("value", "unit", "source"):
        if required not in raw:
            raise UserError(f"{key}: missing {required}", path)
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{key}: value must be a finite number, got {value!r}", path)
    if value < 0:
        raise UserError(f"{key}: negative value {float(value)}", path)
    unit = raw["unit"]
    if unit not in UNITS:
        raise UserError(f"{key}: unknown unit {unit!r} (known: {', '.join(UNITS)})", path)
    if dimension is not None and UNITS[unit][0] != dimension:
        raise UserError(f"{key}: unit {unit!r} is not a unit of {dimension}", path)
    source = raw["source"]
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"{key}: source must be a non-empty citation string", path)
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise UserError(f"{key}: note must be a string", path)
    estimate = raw.get("estimate", False)
    if not isinstance(estimate, bool):
        raise UserError(f"{key}: estimate must be true or false", path)
    return Figure(key, float(value), unit, source.strip(), note, estimate)
