"""Fuse a NetworkIR graph into few segments (one per backbone block / MRM / head, host ops apart).

A segment is a run of nodes sharing a block key (from `Node.source`: `encoder.<stage>[.<index>]`,
`decoder`) and a location (`neuro` / `host`). A node joins the latest segment of its key and
location unless that would close a cycle between segments (e.g. the MRM part after the host gate
of a t3 model), so the segments form a DAG and each can run as one process that receives its
inputs, evaluates its nodes in order and sends its outputs within one step.
Image inputs join the segment of their first consumer; memory inputs of the search graph are
state of the segments that read them (set once per template update), not ports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SegmentSpec:
    """One fused sub-graph: its nodes (in order), the ids arriving on its in-ports (an image input
    node of the segment receives its raw data under its own id), the memory inputs it holds as
    state, and the node ids it sends out (to later segments or as graph outputs)."""

    name: str
    location: str
    node_ids: tuple[str, ...]
    inputs: tuple[str, ...]
    state: tuple[str, ...]
    outputs: tuple[str, ...]


def block_key(source: str) -> str:
    """Block of a node from its source path: `encoder.<stage>[.<index>]`, `decoder`, else the first part."""
    parts = source.split("@")[0].split(":")[0].split(".")
    if parts[0] == "encoder" and len(parts) > 1:
        if len(parts) > 2 and parts[2].isdigit():
            return ".".join(parts[:3])
        return ".".join(parts[:2])
    return parts[0]


def is_state_input(node: Any) -> bool:
    """Memory inputs (kind 'memory') are held as state, not streamed."""
    return node.op == "input" and node.attrs.get("kind") == "memory"


def _first_consumer_keys(nodes: list[Any]) -> dict[str, str]:
    """Block key of the first consumer of every node id."""
    keys: dict[str, str] = {}
    for node in nodes:
        for i in node.inputs:
            keys.setdefault(i, block_key(node.source))
    return keys


def _depends_on(deps: list[set[int]], start: int, target: int) -> bool:
    """True when segment `start` (transitively) reads from segment `target`."""
    stack, seen = [start], set()
    while stack:
        g = stack.pop()
        if g == target:
            return True
        if g not in seen:
            seen.add(g)
            stack.extend(deps[g])
    return False


def partition(graph: Any) -> list[SegmentSpec]:
    """Segments of `graph` (a NetworkIR), each after every segment it reads from."""
    consumer_key = _first_consumer_keys(graph.nodes)
    members: list[list[str]] = []
    labels: list[tuple[str, str]] = []
    deps: list[set[int]] = []
    latest: dict[tuple[str, str], int] = {}
    where: dict[str, int] = {}
    for node in graph.nodes:
        if is_state_input(node):
            continue
        key = consumer_key.get(node.id, node.id) if node.op == "input" else block_key(node.source)
        label = (key, node.location)
        producers = {where[i] for i in node.inputs if i in where}
        g = latest.get(label)
        if g is None or any(p != g and _depends_on(deps, p, g) for p in producers):
            g = len(members)
            members.append([])
            labels.append(label)
            deps.append(set())
            latest[label] = g
        members[g].append(node.id)
        deps[g].update(p for p in producers if p != g)
        where[node.id] = g
    specs = _specs(graph, members, labels, where)
    return [specs[g] for g in _topological(deps)]


def _topological(deps: list[set[int]]) -> list[int]:
    """Segment indices ordered so that every segment follows those it reads from (stable)."""
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < len(deps):
        g = next(g for g in range(len(deps)) if g not in placed and deps[g] <= placed)
        order.append(g)
        placed.add(g)
    return order


def _specs(graph: Any, members: list[list[str]], labels: list[tuple[str, str]],
           where: dict[str, int]) -> list[SegmentSpec]:
    """SegmentSpecs with ports and state from the membership."""
    index = graph.index()
    graph_outputs = set(graph.outputs.values())
    consumers: dict[str, set[int]] = {}
    for node_id, g in where.items():
        for i in index[node_id].inputs:
            consumers.setdefault(i, set()).add(g)
    counts: dict[tuple[str, str], int] = {}
    specs = []
    for g, ids in enumerate(members):
        key, location = labels[g]
        counts[labels[g]] = counts.get(labels[g], 0) + 1
        name = key + ("@host" if location == "host" else "") + (f"#{counts[labels[g]]}" if counts[labels[g]] > 1 else "")
        inputs, state = [], []
        for node_id in ids:
            node = index[node_id]
            if node.op == "input":
                inputs.append(node_id)
            for i in node.inputs:
                if i in where and where[i] != g and i not in inputs:
                    inputs.append(i)
                elif i not in where and is_state_input(index[i]) and i not in state:
                    state.append(i)
        outputs = [i for i in ids if i in graph_outputs or consumers.get(i, set()) - {g}]
        specs.append(SegmentSpec(name, location, tuple(ids), tuple(inputs), tuple(state), tuple(outputs)))
    return specs
