"""The `tiny` bundle simulated in Lava equals the fixed-point reference bit for bit, on real frames.

Every node output of the template and search graphs (Lava trace ports) is compared with
`converters.fixed_point.run_fixed`; the tracker boxes of `deploy.simulate` with those of the
tracker running `FixedPointModel`. One exported netx layer is run through lava-dl netx and shown
equal to the numpy conv process. stop() is never called after a failed run (LAVA.md §9).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import deploy.lava_compat  # noqa: F401  (before Lava)
from converters.export_lava import export_bundle, load_export
from converters.fixed_point import FixedPointModel, run_fixed
from converters.quantize import default_calibration_frames
from deploy.cli import add_simulate_arguments, run_simulate_command
from deploy.simulate import bundle_config, simulate, truncate
from spiketrack.data.datasets import load_sequence
from spiketrack.default_model import resolve_model
from spiketrack.errors import UserError
from spiketrack.profiler.counting import add_layers, count_graph
from spiketrack.profiler.counts import from_json
from spiketrack.tracker.runner import run_tracker_on_sequence
from spiketrack.tracker.spiketrack_tracker import SpikeTrackTracker, TrackerParams

from conftest import one_torch_thread

FRAMES = 3  # template encoding + two search frames


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    """A tiny export bundle (default tiny weights, one calibration image: quick)."""
    out = tmp_path_factory.mktemp("lava") / "tiny_bundle"
    with one_torch_thread():
        export_bundle(resolve_model(None, "tiny").model, out, default_calibration_frames(limit=1))
    return out


@pytest.fixture(scope="module")
def crossing(sequences_dir):
    return load_sequence(sequences_dir / "Crossing")


@pytest.fixture(scope="module")
def traced_run(bundle_dir, crossing, tmp_path_factory):
    """`simulate` in Lava with tracing: every node output of every template encoding and search frame."""
    records = []

    def observe(graph: str, inputs: dict[str, np.ndarray], runner) -> None:
        records.append((graph, {k: v.copy() for k, v in inputs.items()}, runner.node_outputs(graph)))

    out = tmp_path_factory.mktemp("sim")
    result = simulate(bundle_dir, crossing.frames[0].parent.parent, frames=FRAMES, out_dir=out, progress=False,
                      trace=True, observer=observe)
    return result, records, out


def assert_nodes_equal(lava: dict[str, np.ndarray], ref, graph) -> None:
    """Every node (but memory inputs) of `graph` equal; a readable list of the differing ones."""
    ids = [n.id for n in graph.nodes if not (n.op == "input" and n.attrs.get("kind") == "memory")]
    differ = [i for i in ids if not np.array_equal(lava[i], ref.values[i].numpy())]
    assert not differ, f"{len(differ)} of {len(ids)} nodes differ, first: {differ[:5]}"


def test_every_node_bit_exact_on_real_frames(bundle_dir, traced_run):
    bundle, _ = load_export(bundle_dir)
    _, records, _ = traced_run
    assert [g for g, _, _ in records] == ["template"] + ["search"] * (FRAMES - 1)
    profiled = None  # the profiler's counts of the reference values, summed over the search frames
    for graph_name, inputs, outputs in records:
        graph = bundle.graphs()[graph_name]
        with one_torch_thread():
            ref = run_fixed(graph, {k: torch.from_numpy(v) for k, v in inputs.items()})
        assert_nodes_equal(outputs, ref, graph)
        if graph_name == "search":
            layers = count_graph(graph, ref.values)
            profiled = layers if profiled is None else add_layers(profiled, layers)
    record = from_json(traced_run[0].counts_path)  # counted inside the Lava processes
    assert record.layers == profiled  # field by field, as spiketrack.profiler counts them
    assert sum(layer.spikes for layer in record.layers) > 0


def test_simulated_boxes_equal_fixed_point_tracker(bundle_dir, crossing, traced_run):
    result, _, out = traced_run
    bundle, _ = load_export(bundle_dir)
    cfg = bundle_config(bundle, bundle_dir)
    seq = truncate(crossing, FRAMES)
    params = TrackerParams.from_model_cfg(cfg).for_dataset(seq.name)
    with one_torch_thread():
        ref_boxes, _ = run_tracker_on_sequence(SpikeTrackTracker(FixedPointModel(bundle, cfg), params), seq,
                                               progress=False)
    np.testing.assert_array_equal(result.boxes, ref_boxes)
    lines = result.boxes_path.read_text().splitlines()
    assert len(lines) == FRAMES and all(len(line.split(",")) == 4 for line in lines)
    record = from_json(result.counts_path)
    assert record.source == "lava" and record.frames == FRAMES - 1 and record.variant == "tiny"
    ids = {layer.layer_id for layer in record.layers}
    assert ids <= {n.id for n in bundle.search.nodes} and "decoder.conv5_ctr" in ids
    assert sum(layer.synops for layer in record.layers) > 0
    assert from_json(result.template_counts_path).frames == 1
    summary = json.loads((out / "simulate.json").read_text())
    assert summary["seconds_per_search_frame"] > 0


def test_netx_layer_equals_numpy_conv_process(bundle_dir):
    """One exported conv layer loaded by lava-dl netx: its synaptic currents (Lava's Conv, lag 1)
    equal the exact integer convolution, and requantized they equal our SpikeConv process."""
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from deploy import kernels as K
    from deploy.lava.builder import run_config
    from deploy.lava.procs.spike_conv.process import SpikeConv
    from deploy.lava_compat import run_or_raise

    bundle, files = load_export(bundle_dir)
    entry = min((f for f in files if f.layers[0].weight_shape[-1] == 3),  # the cheapest 3x3 conv layer
                key=lambda f: np.prod(f.input_shape_whc) * f.layers[0].weight_shape[0])
    graph = bundle.graphs()[entry.graph]
    conv = graph.node(entry.layers[0].conv)
    w, h, c = entry.input_shape_whc
    steps = 3
    spikes = np.random.default_rng(0).integers(0, 5, size=(steps, c, h, w))
    net = netx.hdf5.Network(net_config=str(bundle_dir / entry.file), input_shape=(w, h, c), input_message_bits=3,
                            num_layers=1)
    src = Source(data=spikes.transpose(3, 2, 1, 0).astype(np.float64))  # W, H, C, steps
    src.s_out.connect(net.inp)
    synapse = net.layers[0].synapse
    sink = Sink(shape=synapse.a_out.shape, buffer=steps)
    synapse.a_out.connect(sink.a_in)
    run_or_raise(net, RunSteps(num_steps=steps), run_config())
    currents = np.rint(sink.data.get()).astype(np.int64).transpose(3, 2, 1, 0)  # steps, C, H, W
    net.stop()
    a = conv.attrs
    acc = K.conv_accumulate(spikes, conv.params["weight"], a["stride"], a["padding"], a["groups"], 4)
    np.testing.assert_array_equal(currents[1:], acc[:-1])  # netx's synapse delivers one step later

    proc = SpikeConv(in_shape=(1, c, h, w), weight=conv.params["weight"], bias=conv.params["bias"],
                     stride=a["stride"], padding=a["padding"], groups=a["groups"], shift=a["shift"])
    src = Source(data=np.moveaxis(spikes[:, None].astype(np.float64), 0, -1))
    src.s_out.connect(proc.s_in)
    sink = Sink(shape=proc.a_out.shape, buffer=steps)
    proc.a_out.connect(sink.a_in)
    run_or_raise(proc, RunSteps(num_steps=steps), run_config())
    ours = np.moveaxis(np.rint(sink.data.get()).astype(np.int64), -1, 0)[:, 0]
    proc.stop()
    requantized = np.clip(K.rshift(currents[1:], a["shift"]) + conv.params["bias"][None, :, None, None],
                          -(1 << 23), (1 << 23) - 1)
    np.testing.assert_array_equal(ours[:-1], requantized)


def test_user_errors(bundle_dir, crossing, tmp_path):
    with pytest.raises(UserError, match="no such bundle"):
        simulate(tmp_path / "missing", crossing.frames[0].parent.parent, frames=2, out_dir=tmp_path / "o")
    # a sequence whose frame size changes
    seq_dir = tmp_path / "resized"
    (seq_dir / "img").mkdir(parents=True)
    for i, frame in enumerate(crossing.frames[:3]):
        image = cv2.imread(str(frame))
        if i == 2:
            image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2))
        cv2.imwrite(str(seq_dir / "img" / f"{i + 1:04d}.jpg"), image)
    np.savetxt(seq_dir / "groundtruth_rect.txt", crossing.ground_truth[:3], fmt="%.0f", delimiter=",")
    with pytest.raises(UserError, match="differs from the first frame") as err:
        simulate(bundle_dir, seq_dir, out_dir=tmp_path / "o", backend="numpy")
    assert "0003.jpg" in str(err.value)
    # a bundle that does not match its variant: meta says 256-pixel crops
    other = tmp_path / "other_bundle"
    shutil.copytree(bundle_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["meta"]["model_config"]["search_size"] = 256
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="image input of shape"):
        simulate(other, crossing.frames[0].parent.parent, frames=2, out_dir=tmp_path / "o", backend="numpy")
    with pytest.raises(UserError, match="frames must be >= 1"):
        simulate(bundle_dir, crossing.frames[0].parent.parent, frames=0, out_dir=tmp_path / "o", backend="numpy")


def test_cli_numpy_backend_matches_lava_counts_format(bundle_dir, crossing, tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    args = parser.parse_args(["--bundle", str(bundle_dir), "--sequence", str(crossing.frames[0].parent.parent),
                              "--frames", "3", "--out", str(tmp_path), "--backend", "numpy", "--no-progress"])
    assert run_simulate_command(args) == 0
    assert "Crossing: 3 frames on numpy" in capsys.readouterr().out
    assert from_json(tmp_path / "counts.json").frames == 2
    assert len((tmp_path / "Crossing.txt").read_text().splitlines()) == 3
