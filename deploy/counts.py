"""Per-node simulation statistics -> `spiketrack.profiler.counts` records (keyed by IR node ids).

Kinds: `neuron` (neurons, spikes, neuron updates), `conv` / `dwconv` (groups > 1) / `linear` (1x1)
for convs on spikes (synops) and the host stem (`conv_dense`, dense MACs), `attention` (k^T v
memories of the backbone and template side, q @ (k^T v) reads of the backbone), `memory_read`
(reads of a template memory held as state by an MRM), `host` for everything elementwise or
host-side (adds, positional tables, pooling, upsampling, gate, sigmoid, image quantization; their
`host_ops` are output elements x summed terms). Graph inputs that are memories are not layers.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from deploy.graph_eval import STAT_FIELDS
from deploy.partition import is_state_input
from spiketrack.profiler.counting import fan_out, layer_kind, param_bytes
from spiketrack.profiler.counts import CountsRecord, LayerCounts

def layer_counts(node: Any, stats: np.ndarray, index: dict[str, Any]) -> LayerCounts:
    """One LayerCounts from a node and its summed stats row."""
    s = dict(zip(STAT_FIELDS, (int(v) for v in stats)))
    neurons = int(math.prod(node.shape[1:])) if node.op == "neuron" else 0
    spike_input = node.op in ("conv", "memory", "retrieve")
    return LayerCounts(node.id, layer_kind(node, index), node.location, spike_input, int(node.shape[0]),
                       neurons=neurons, spikes=s["spikes"], synops=s["synops"],
                       neuron_updates=s["neuron_updates"], dense_macs=s["dense_macs"],
                       attention_ops=s["attention_ops"], host_ops=s["host_ops"],
                       weight_bytes=param_bytes(node), fan_out=fan_out(node))


def counts_record(graph: Any, stats: dict[str, np.ndarray], frames: int, meta: dict[str, Any]) -> CountsRecord:
    """CountsRecord (source 'lava') of one graph over `frames` runs; `meta` from the bundle."""
    index = graph.index()
    layers = [layer_counts(n, stats[n.id], index) for n in graph.nodes
              if not is_state_input(n) and n.id in stats]
    return CountsRecord(variant=graph.variant, checkpoint=str(meta.get("checkpoint", "")), frames=frames,
                        source="lava", weights=str(meta.get("weights", "")), layers=layers)


def saturated_counts(stats: dict[str, np.ndarray]) -> dict[str, int]:
    """Node id -> saturated elements, for nodes that saturated at all."""
    k = STAT_FIELDS.index("saturated")
    return {nid: int(row[k]) for nid, row in stats.items() if row[k]}
