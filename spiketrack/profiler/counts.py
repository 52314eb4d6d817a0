"""The one record type for per-layer statistics, filled by PyTorch hooks or by the Lava simulation.

Counts are keyed by the NetworkIR layer id so the two sources can be compared line by line.
All counts are totals over every timestep and every frame of the run (divide by
`CountsRecord.frames` for per-frame figures). Field meanings (`LayerCounts`):

* `neurons`        output neurons of the layer per timestep (0 when it has no neuron);
* `spikes`         sum of the integer spike values 0..4 it emitted;
* `synops`         sum over input spikes of (spike value x fan-out): synaptic operations;
* `neuron_updates` neuron state updates (neurons x timesteps x frames for a dense update);
* `dense_macs`     multiply-accumulates on non-spike inputs (e.g. the first conv on pixels);
* `attention_ops`  accumulates/MACs of matrix products between two activations (q@KV, k^T@v,
                   memory reads): charged like synops when `input_is_spike`, else like MACs;
* `host_ops`       elementwise/other operations (BN, softmax, pooling, decoding);
* `weight_bytes`   bytes of parameters the layer stores; `fan_out` its synaptic fan-out.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from spiketrack.errors import UserError
from spiketrack.utils.atomic import write_text_atomic

FORMAT = "spiketrack-counts"
VERSION = 1
LAYER_KINDS = ("conv", "dwconv", "linear", "attention", "memory_read", "neuron", "host")
LOCATIONS = ("neuro", "host")
SOURCES = ("pytorch", "lava")


@dataclass(frozen=True)
class LayerCounts:
    """Statistics of one IR layer, summed over all timesteps and frames of a run."""

    layer_id: str
    kind: str
    location: str
    input_is_spike: bool
    timesteps: int
    neurons: int = 0
    spikes: int = 0
    synops: int = 0
    neuron_updates: int = 0
    dense_macs: int = 0
    attention_ops: int = 0
    host_ops: int = 0
    weight_bytes: int = 0
    fan_out: int = 0

    def firing_rate(self, frames: int) -> float | None:
        """Mean integer spike count per neuron per timestep (spec §12 SFR, range 0..4); None if no neurons."""
        if self.neurons == 0:
            return None
        return self.spikes / (self.neurons * self.timesteps * frames)


@dataclass(frozen=True)
class CountsRecord:
    """Per-layer counts of one run: which model, weights and frames they describe."""

    variant: str
    checkpoint: str
    frames: int
    source: str
    weights: str
    layers: list[LayerCounts] = field(default_factory=list)

    def layer(self, layer_id: str) -> LayerCounts:
        """The layer with id `layer_id` (KeyError when absent)."""
        for item in self.layers:
            if item.layer_id == layer_id:
                return item
        raise KeyError(layer_id)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    def to_json(self, path: str | Path) -> None:
        """Write the record atomically as JSON."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")


def record_from_dict(data: Any, path: str | Path) -> CountsRecord:
    """Validate a parsed JSON document into a CountsRecord; UserError naming `path` and the field."""
    if not isinstance(data, dict):
        raise UserError("counts file must hold a JSON object", path)
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise UserError(f"not a counts file (expected format {FORMAT!r} version {VERSION})", path)
    top = {"format", "version", *(f.name for f in fields(CountsRecord))}
    _reject_unknown(data, top, "", path)
    for key in ("variant", "checkpoint", "weights"):
        _require(isinstance(data.get(key), str), f"{key}: must be a string", path)
    _require(data.get("source") in SOURCES, f"source: must be one of {SOURCES}", path)
    _require(_is_int(data.get("frames")) and data["frames"] >= 1, "frames: must be an integer >= 1", path)
    _require(isinstance(data.get("layers"), list), "layers: must be a list", path)
    layers = [_layer_from_dict(item, i, path) for i, item in enumerate(data["layers"])]
    ids = [layer.layer_id for layer in layers]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    _require(not duplicates, f"layers: duplicate layer ids {duplicates}", path)
    return CountsRecord(data["variant"], data["checkpoint"], data["frames"], data["source"],
                        data["weights"], layers)


def from_json(path: str | Path) -> CountsRecord:
    """Read and validate a counts JSON file (see `record_from_dict`)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"cannot read counts file: {exc.strerror}", path) from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON: {exc}", path) from exc
    return record_from_dict(data, path)


def check_variant(record: CountsRecord, variant: str, path: str | Path) -> None:
    """UserError unless the counts were recorded for `variant` (counts of one model never price another)."""
    if record.variant != variant:
        raise UserError(f"counts are for variant {record.variant!r}, expected {variant!r}", path)


def _layer_from_dict(item: Any, index: int, path: str | Path) -> LayerCounts:
    """Validate one entry of `layers`."""
    where = f"layers[{index}]"
    _require(isinstance(item, dict), f"{where}: must be an object", path)
    names = {f.name for f in fields(LayerCounts)}
    _reject_unknown(item, names, f"{where}.", path)
    layer_id = item.get("layer_id")
    _require(isinstance(layer_id, str) and layer_id != "", f"{where}.layer_id: must be a non-empty string", path)
    where = f"layers[{layer_id}]"
    _require(item.get("kind") in LAYER_KINDS, f"{where}.kind: must be one of {LAYER_KINDS}", path)
    _require(item.get("location") in LOCATIONS, f"{where}.location: must be one of {LOCATIONS}", path)
    _require(isinstance(item.get("input_is_spike"), bool), f"{where}.input_is_spike: must be true or false", path)
    for name in names - {"layer_id", "kind", "location", "input_is_spike"}:
        value = item.get(name, 0)
        _require(_is_int(value) and value >= 0, f"{where}.{name}: must be a non-negative integer, got {value!r}", path)
    _require(item.get("timesteps", 0) >= 1, f"{where}.timesteps: must be >= 1", path)
    return LayerCounts(**item)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(condition: bool, message: str, path: str | Path) -> None:
    if not condition:
        raise UserError(message, path)


def _reject_unknown(mapping: dict, allowed: set[str], prefix: str, path: str | Path) -> None:
    unknown = sorted(set(mapping) - allowed)
    _require(not unknown, f"{prefix}{unknown[0] if unknown else ''}: unknown field", path)
