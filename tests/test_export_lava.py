"""Lava export bundle: round trip, atomic writes, validation of a damaged bundle, netx loading,
the Loihi 2 mapping table and the `export` command."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from converters import export_lava
from converters.cli import add_export_arguments, run_export_command
from converters.export_lava import export_bundle, load_export, loihi_mapping, netx_chains
from converters.fixed_point import run_fixed
from converters.ir import ARRAYS_FILE, MANIFEST_FILE, file_record, load_bundle
from converters.quantize import default_calibration_frames
from spiketrack.errors import UserError
from spiketrack.models import build_model
from spiketrack.models.procedural import load_procedural_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = load_procedural_weights(build_model("tiny"))
    out = tmp_path_factory.mktemp("export") / "bundle"
    return export_bundle(model, out, default_calibration_frames(1))


@pytest.fixture
def bundle_copy(exported, tmp_path):
    """A private copy of the exported bundle to damage."""
    import shutil

    dst = tmp_path / "bundle"
    shutil.copytree(exported.out, dst)
    return dst


def manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_FILE).read_text())


def write_manifest(folder: Path, data: dict) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(data))


def test_round_trip_is_identical(exported):
    loaded, files = load_export(exported.out)
    assert len(files) == len(exported.netx_files) > 0
    for name, g in exported.bundle.graphs().items():
        h = loaded.graphs()[name]
        assert [n.id for n in g.nodes] == [n.id for n in h.nodes]
        assert g.inputs == h.inputs and g.outputs == h.outputs
        for a, b in zip(g.nodes, h.nodes):
            assert (a.op, a.inputs, a.shape, a.frac_bits, a.attrs, a.location, a.source) == \
                   (b.op, b.inputs, b.shape, b.frac_bits, b.attrs, b.location, b.source)
            assert a.params.keys() == b.params.keys()
            assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    x = torch.randn(1, 3, 128, 128)
    r1 = run_fixed(exported.bundle.template, {"templates": x})
    r2 = run_fixed(loaded.template, {"templates": x})
    assert all(torch.equal(r1.values[k], r2.values[k]) for k in r1.values)


def test_manifest_lists_placement(exported):
    data = manifest(exported.out)
    lava = data["lava"]
    netx_nodes = {(f["graph"], nid) for f in lava["netx"] for layer in f["layers"]
                  for nid in (layer["conv"], layer["neuron"])}
    for name, g in exported.bundle.graphs().items():
        listed = set(lava["placement"][name]["custom"]) | set(lava["placement"][name]["host"])
        rest = {n.id for n in g.nodes if n.op != "input"} - {nid for gr, nid in netx_nodes if gr == name}
        assert listed == rest
        assert "encoder.downsample1_1.encode_conv" in lava["placement"][name]["host"] or name == "search"
    assert set(data["files"]) == {ARRAYS_FILE} | {f["file"] for f in lava["netx"]}
    assert data["meta"]["quant_report"]["layers"]


def test_netx_chains_are_plain_conv_neuron_chains(exported):
    g = exported.bundle.search
    chains = netx_chains(g)
    heads = [c for c in chains if c[0][0].id == "decoder.conv1_ctr"]
    assert len(heads) == 1 and [conv.id for conv, _ in heads[0]] == [f"decoder.conv{i}_ctr" for i in range(1, 5)]
    for chain in chains:
        for conv, neuron in chain:
            assert conv.op == "conv" and not conv.attrs["per_step"] and neuron.inputs == [conv.id]


def test_netx_file_layout(exported):
    entry = exported.netx_files[0]
    with h5py.File(exported.out / entry.file) as f:
        layer = f["layer/0"]
        assert layer["type"][0] == b"conv" and layer["neuron/type"][()] == b"CUBA"
        w = layer["weight"][()]
        assert w.dtype == np.float32 and np.array_equal(w, np.round(w)) and np.abs(w).max() <= 128
        assert layer["spiketrack/conv"][()].decode() == entry.layers[0].conv


def test_netx_loads_a_file(exported):
    compat = REPO / "deploy" / "lava_compat.py"
    if not compat.is_file():
        pytest.skip("deploy/lava_compat.py (the Lava shim) does not exist yet")
    import deploy.lava_compat  # noqa: F401  (must precede any Lava import)
    from lava.lib.dl import netx

    entry = max(exported.netx_files, key=lambda f: len(f.layers))
    net = netx.hdf5.Network(net_config=str(exported.out / entry.file), input_shape=tuple(entry.input_shape_whc))
    assert len(net.layers) == len(entry.layers)
    c, h, w = entry.layers[-1].shape_chw
    assert tuple(net.out.shape) == (w, h, c)


def test_failed_export_leaves_nothing(exported, tmp_path, monkeypatch):
    model = load_procedural_weights(build_model("tiny"))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    quantized = export_lava.QuantResult(exported.bundle, exported.quant)
    monkeypatch.setattr(export_lava, "quantize_model", lambda *args: quantized)
    monkeypatch.setattr(export_lava, "save_bundle", boom)
    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError, match="disk full"):
        export_bundle(model, out, default_calibration_frames(1))
    assert not out.exists() and list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "keep.txt").write_text("previous bundle")
    with pytest.raises(RuntimeError):
        export_bundle(model, out, default_calibration_frames(1))
    assert (out / "keep.txt").read_text() == "previous bundle" and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_truncated_netx_file_is_named(bundle_copy, exported):
    path = bundle_copy / exported.netx_files[3].file
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError) as err:
        load_export(bundle_copy)
    assert err.value.path == str(path) and "truncated" in err.value.message


def test_corrupt_hdf5_with_matching_hash_is_named(bundle_copy, exported):
    rel = exported.netx_files[2].file
    path = bundle_copy / rel
    path.write_bytes(b"not hdf5" * 100)
    data = manifest(bundle_copy)
    data["files"][rel] = file_record(path)  # manifest regenerated over a bad file
    write_manifest(bundle_copy, data)
    with pytest.raises(UserError) as err:
        load_export(bundle_copy)
    assert err.value.path == str(path) and "HDF5" in err.value.message


def test_missing_file_is_named(bundle_copy, exported):
    path = bundle_copy / exported.netx_files[0].file
    path.unlink()
    with pytest.raises(UserError) as err:
        load_export(bundle_copy)
    assert err.value.path == str(path) and "missing" in err.value.message


def test_hash_mismatch_is_named(bundle_copy):
    path = bundle_copy / ARRAYS_FILE
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError) as err:
        load_bundle(bundle_copy)
    assert err.value.path == str(path) and "sha256" in err.value.message


def test_netx_shape_mismatch_is_named(bundle_copy, exported):
    data = manifest(bundle_copy)
    entry = data["lava"]["netx"][1]
    entry["layers"][0]["shape_chw"][0] += 1
    write_manifest(bundle_copy, data)
    with pytest.raises(UserError) as err:
        load_export(bundle_copy)
    assert err.value.path == str(bundle_copy / entry["file"]) and "shape" in err.value.message


def test_ir_param_shape_mismatch_is_named(bundle_copy):
    data = manifest(bundle_copy)
    conv = next(n for n in data["graphs"]["search"]["nodes"] if n["op"] == "conv")
    conv["shape"][1] += 1
    write_manifest(bundle_copy, data)
    with pytest.raises(UserError) as err:
        load_bundle(bundle_copy)
    assert err.value.path == str(bundle_copy / MANIFEST_FILE) and conv["id"] in err.value.message


def test_not_a_bundle(tmp_path):
    with pytest.raises(UserError, match="no manifest.json"):
        load_export(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        load_export(tmp_path)


def test_loihi_mapping_table(exported):
    table = loihi_mapping(exported.bundle)
    rows = {(r.graph, r.node): r for r in table.rows}
    n_nodes = sum(len([n for n in g.nodes if n.op != "input"]) for g in exported.bundle.graphs().values())
    assert len(rows) == n_nodes
    neuron = rows[("search", "decoder.spike@0")]
    assert neuron.placement == "custom microcode" and neuron.neurons == 96 * 8 * 8 and neuron.cores == 1
    conv = rows[("search", "decoder.conv1_ctr")]
    assert conv.fan_in == 96 * 9 and conv.synapses == 96 * 9 * 64 * 8 * 8 and conv.weight_bytes == 64 * 96 * 9
    assert conv.placement == "neurocore" and conv.neurons == 0  # integrates into decoder.ctr1_spike
    assert rows[("search", "decoder:sigmoid_ctr")].placement == "host"
    text = table.format(detail=False)
    assert "8192 neurons per core" in text and "unknown" in text and "Loihi 2" in text


def test_export_command_prints_table(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    args = parser.parse_args(["--format", "lava", "--variant", "tiny", "--out", str(tmp_path / "b"),
                              "--calibration-frames", "1"])
    assert run_export_command(args) == 0
    out = capsys.readouterr().out
    assert "netx HDF5 files" in out and "custom microcode" in out and "neurocore" in out
    assert (tmp_path / "b" / MANIFEST_FILE).is_file()
