"""NIR export: the files read back with nir.read; node types, shapes, weights and the marked cuts."""
from __future__ import annotations

import json
from collections import Counter

import nir
import numpy as np
import pytest

from converters.binary import SUBSTEPS
from converters.graph import build_float_graphs
from converters.nir_export import FILES, NOT_EXPRESSIBLE, dense_weight, export_nir_command
from spiketrack.errors import UserError
from spiketrack.models import build_model
from spiketrack.models.procedural import load_procedural_weights


def text(value) -> str:
    """NIR metadata strings may come back as bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = load_procedural_weights(build_model("tiny"))
    out = tmp_path_factory.mktemp("nir") / "tiny"
    summary = export_nir_command(model, out)
    graphs = dict(zip(FILES, build_float_graphs(model)))
    return summary, out, graphs, {name: nir.read(out / f) for name, f in FILES.items()}


def test_summary_names_files_cuts_and_procedural_weights(exported):
    summary, out, _, _ = exported
    assert "PROCEDURAL weights" in summary and str(out) in summary
    assert "template.nir" in summary and "search.nir" in summary and "cut nodes" in summary


@pytest.mark.parametrize("name", list(FILES))
def test_node_types_follow_the_ir(exported, name):
    _, _, graphs, read = exported
    graph, g = graphs[name], read[name]
    ops = Counter(n.op for n in graph.nodes)
    cuts = json.loads(text(g.metadata["cut_nodes"]))
    types = Counter(type(n).__name__ for n in g.nodes.values())
    assert types["IF"] == ops["neuron"]
    assert types["Conv2d"] == ops["conv"] + ops["conv_dense"]  # T = 1: per-step convs are plain convs
    assert types["Scale"] == ops["add"] and types["AvgPool2d"] == ops["avgpool"]
    cut_ops = {c["op"] for c in cuts}
    assert {"memory", "retrieve", "add_pos"} <= cut_ops <= set(NOT_EXPRESSIBLE)
    cut_ir = [n for n in graph.nodes if n.op in ("memory", "retrieve", "add_pos", "upsample", "sigmoid", "gate",
                                                 "repeat") or (n.op == "input" and n.attrs["kind"] == "memory")]
    assert len(cuts) == len(cut_ir)
    for c in cuts:  # each cut: one Input for its result, one Output per input, metadata naming the op
        boundary = g.nodes[f"{c['ir_node']}[out]"]
        assert isinstance(boundary, nir.Input) and text(boundary.metadata["cut"]) == c["op"]
        assert list(boundary.input_type["input"]) == c["shape"][1:]
        for k in range(len(c["inputs"])):
            assert isinstance(g.nodes[f"{c['ir_node']}[in{k}]"], nir.Output)
    assert "window of 4 sub-steps" in text(g.metadata["semantics"])
    assert text(g.metadata["variant"]) == "tiny"


def test_shapes_weights_and_edges(exported):
    _, _, graphs, read = exported
    search, g = graphs["search"], read["search"]
    assert list(g.nodes["search"].input_type["input"]) == [3, 128, 128]
    assert list(g.nodes["offset_map"].output_type["output"]) == [2, 8, 8]
    stem = next(n for n in search.nodes if n.op == "conv_dense")
    np.testing.assert_allclose(g.nodes[stem.id].weight, stem.params["weight"], rtol=1e-6)
    dw = next(n for n in search.nodes if n.op == "conv" and n.attrs["groups"] > 1)
    np.testing.assert_allclose(g.nodes[dw.id].weight, dense_weight(dw.params["weight"], dw.attrs["groups"]) / SUBSTEPS,
                               rtol=1e-6)
    assert int(g.nodes[dw.id].metadata["groups"]) == dw.attrs["groups"]
    neuron = next(n for n in search.nodes if n.op == "neuron")
    node = g.nodes[neuron.id]
    assert isinstance(node, nir.IF) and node.v_threshold.shape == neuron.shape[1:]
    assert np.all(node.v_threshold == 0.5) and "soft" in text(node.metadata["reset"])
    index = search.index()
    for node_id, ir in index.items():  # every expressible IR edge is an NIR edge
        if node_id in g.nodes and not isinstance(g.nodes[node_id], nir.Input):
            for i in ir.inputs:
                source = i if i in g.nodes else f"{i}[out]"
                assert (source, node_id) in g.edges, (source, node_id)


def test_dense_weight_is_the_grouped_conv():
    import torch

    w = np.random.default_rng(0).normal(size=(6, 2, 3, 3)).astype(np.float32)
    x = torch.randn(1, 6, 5, 5)
    grouped = torch.nn.functional.conv2d(x, torch.from_numpy(w), padding=1, groups=3)
    dense = torch.nn.functional.conv2d(x, torch.from_numpy(dense_weight(w, 3)), padding=1)
    assert torch.allclose(grouped, dense, atol=1e-5)


def test_output_path_that_is_a_file(tmp_path):
    target = tmp_path / "file.nir"
    target.write_text("keep")
    with pytest.raises(UserError, match="is a file"):
        export_nir_command(build_model("tiny"), target)
    assert target.read_text() == "keep"
