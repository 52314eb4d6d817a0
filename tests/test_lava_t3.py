"""Three template steps (t3 semantics) in Lava: repeated queries, per-step convs, the host channel gate.

A tiny-sized model with T = 3 (procedural weights) is quantized and both graphs run in Lava with
tracing; every node equals the fixed-point reference. The host gate splits each MRM into three
processes (neuro, host, neuro) without a cycle.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import deploy.lava_compat  # noqa: F401  (before Lava)
from converters.fixed_point import run_fixed
from converters.quantize import default_calibration_frames, quantize_model
from deploy.backend import NumpyBackend
from deploy.lava.runner import LavaRunner
from deploy.partition import block_key, partition
from spiketrack.models.config import ModelConfig
from spiketrack.models.procedural import load_procedural_weights
from spiketrack.models.spiketrack import SpikeTrack

from conftest import one_torch_thread


@pytest.fixture(scope="module")
def bundle_t3():
    cfg = ModelConfig("tiny_t3", (16, 32, 64, 96), 128, 3, 64)
    with one_torch_thread():
        model = load_procedural_weights(SpikeTrack(cfg)).eval()
        return quantize_model(model, default_calibration_frames(limit=1)).bundle


def test_block_keys():
    assert block_key("encoder.ConvBlock1_1.0.Conv.pwconv1") == "encoder.ConvBlock1_1.0"
    assert block_key("encoder.block3.4.attn.q_spike@1") == "encoder.block3.4"
    assert block_key("encoder.downsample2.encode_conv") == "encoder.downsample2"
    assert block_key("encoder.mrm.0:add1") == "encoder.mrm.0"
    assert block_key("decoder") == "decoder" and block_key("decoder.conv5_ctr") == "decoder"


def test_gate_splits_mrm_into_acyclic_segments(bundle_t3):
    specs = partition(bundle_t3.search)
    names = [s.name for s in specs]
    assert names[names.index("encoder.mrm.0"):names.index("encoder.mrm.0") + 3] == [
        "encoder.mrm.0", "encoder.mrm.0@host", "encoder.mrm.0#2"]
    produced: set[str] = set()
    for spec in specs:  # topological: every port input produced by an earlier segment
        assert all(i in produced or i in spec.node_ids for i in spec.inputs), spec.name
        produced.update(spec.node_ids)
    covered = [i for s in specs for i in s.node_ids]
    assert len(covered) == len(set(covered)) == len(bundle_t3.search.nodes) - 6  # all but the 6 memory inputs
    assert {s.state[0] for s in specs if s.state} == {f"memory{i}" for i in range(6)}


def test_t3_every_node_bit_exact(bundle_t3):
    rng = np.random.default_rng(0)
    templates = rng.normal(size=(3, 3, 128, 128)).astype(np.float32)
    search = rng.normal(size=(1, 3, 128, 128)).astype(np.float32)
    runner = LavaRunner(bundle_t3, trace=True)
    memories = runner.encode_templates(templates)
    template_nodes = runner.node_outputs("template")
    runner.run_frame(search)
    search_nodes = runner.node_outputs("search")
    runner.close()
    with one_torch_thread():
        ref_t = run_fixed(bundle_t3.template, {"templates": torch.from_numpy(templates)})
        ref_s = run_fixed(bundle_t3.search, {"search": torch.from_numpy(search),
                                             **{k: torch.from_numpy(v) for k, v in memories.items()}})
    for graph, lava, ref in ((bundle_t3.template, template_nodes, ref_t), (bundle_t3.search, search_nodes, ref_s)):
        differ = [n.id for n in graph.nodes if n.id in lava and not np.array_equal(lava[n.id], ref.values[n.id].numpy())]
        assert not differ, f"{graph.name}: {differ[:5]}"
    assert any(n.op == "gate" for n in bundle_t3.search.nodes)
    numpy_runner = NumpyBackend().build(bundle_t3)  # the Lava-free backend agrees as well
    numpy_runner.encode_templates(templates)
    maps = numpy_runner.run_frame(search)
    for name, nid in bundle_t3.search.outputs.items():
        np.testing.assert_array_equal(maps[name], ref_s.values[nid].numpy())
