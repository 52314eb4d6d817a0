"""`spiketrack profile` end to end on `tiny` (3 frames of Crossing), from a simulator's counts, and
one-line errors (exit code 2, naming the file) for bad input."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from spiketrack.cli import main as cli_main
from spiketrack.profiler.counts import from_json

from conftest import fails_in_one_line

REPO = Path(__file__).resolve().parents[1]
CMOS, LOIHI = REPO / "hw_profiles" / "cmos45nm.yaml", REPO / "hw_profiles" / "loihi.yaml"
FRAMES = 3


def main(argv: list[str]) -> int:
    """`spiketrack profile ARGV` through the real CLI (exit code, one-line errors)."""
    return cli_main(["profile", *argv])


@pytest.fixture(scope="module")
def crossing(sequences_dir) -> Path:
    return sequences_dir / "Crossing"


@pytest.fixture(scope="module")
def profiled(crossing, tmp_path_factory):
    """One profile run with two hardware profiles; its output folder and stdout."""
    out = tmp_path_factory.mktemp("profile") / "out"
    argv = ["profile", "--variant", "tiny", "--sequence", str(crossing), "--frames", str(FRAMES),
            "--profile", str(CMOS), "--profile", str(LOIHI), "--out", str(out)]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli_main(argv) == 0
    return out, stdout.getvalue()


def test_report_files_and_summary(profiled):
    out, stdout = profiled
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.html", "counts.json", "counts_template.json"}
    assert "| cmos45nm | paper |" in stdout and "| loihi | neuromorphic |" in stdout and "1/26" in stdout
    assert "per encoding" in stdout and "weights:" in stdout
    page = (out / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") >= 6  # rate, ops, 2 x layer energy, stacked, per frame
    assert "TransT (architecture-only count)" in page and "SpikeTrack ÷ TransT" in page and "1/26" in page
    assert "The paper's figures beside ours" in page and "Template encoder" in page
    assert "<script" not in page and "src='http" not in page


def test_report_figures_trace_to_counts_and_profiles(profiled):
    out, _ = profiled
    data = json.loads((out / "report.json").read_text())
    search = from_json(out / "counts.json")
    assert search.frames == FRAMES - 1 and from_json(out / "counts_template.json").frames == 1
    assert data["inputs"]["counts"] == search.to_dict()
    ctx = data["context"]
    assert ctx["weights"] == search.weights and ctx["frames_tracked"] == FRAMES and ctx["frame_rate_fps"] == 30.0
    assert [Path(p).name for p in ctx["profile_paths"]] == ["cmos45nm.yaml", "loihi.yaml"]
    assert len(ctx["per_frame"]) == FRAMES - 1 and len(ctx["boxes"]) == FRAMES
    ops = {k: sum(getattr(l, k) for l in search.layers) for k in ("dense_macs", "synops", "attention_ops")}
    paper = next(r for r in data["comparison"] if r["model"] == "paper")
    expected = (4.6 * ops["dense_macs"] + 0.9 * (ops["synops"] + ops["attention_ops"])) * 1e-12 / search.frames
    assert paper["per_frame_j"] == pytest.approx(expected)
    assert paper["ratio_to_transt"] == pytest.approx(expected / (data["transt"]["macs"]["per_frame_cached_template"]
                                                                 * 4.6e-12))
    loihi = next(r for r in data["results"] if r["profile"] == "loihi")["breakdowns"][0]
    assert loihi["parameters"]["sim_time_s"] == pytest.approx((FRAMES - 1) / 30.0)
    assert data["template"]["per_encoding"][0]["encodings"] == 1


def test_from_simulation_counts(profiled, tmp_path, capsys):
    """A simulator's layout (counts.json + counts_template.json beside it) is priced without PyTorch."""
    out, _ = profiled
    assert main(["--variant", "tiny", "--from-simulation", str(out / "counts.json"), "--profile", str(CMOS),
                 "--out", str(tmp_path / "sim_report")]) == 0
    data = json.loads((tmp_path / "sim_report" / "report.json").read_text())
    assert "counts_template.json" in data["context"]["counts_source"]
    assert data["inputs"]["counts"] == from_json(out / "counts.json").to_dict()
    assert not (tmp_path / "sim_report" / "counts.json").exists()
    assert "| cmos45nm | paper |" in capsys.readouterr().out




def test_profile_with_negative_figure(tmp_path, crossing, capsys):
    data = yaml.safe_load(CMOS.read_text())
    data["energy"]["e_ac"]["value"] = -0.9
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    fails_in_one_line(main, capsys, ["--sequence", str(crossing), "--profile", str(CMOS), "--profile", str(bad),
                    "--out", str(tmp_path / "o")], str(bad), "energy.e_ac", "negative")
    assert not (tmp_path / "o").exists()


def test_sequence_shorter_than_frames(tmp_path, crossing, capsys):
    fails_in_one_line(main, capsys, ["--sequence", str(crossing), "--frames", "500", "--profile", str(CMOS),
                    "--out", str(tmp_path / "o")], str(crossing), "120 frames", "--frames 500")
    assert not (tmp_path / "o").exists()


def test_counts_of_another_variant(profiled, tmp_path, capsys):
    data = json.loads((profiled[0] / "counts.json").read_text())
    data["variant"] = "s256_t1"
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps(data))
    fails_in_one_line(main, capsys, ["--variant", "tiny", "--from-simulation", str(counts), "--profile", str(CMOS),
                    "--out", str(tmp_path / "o")], str(counts), "'s256_t1'", "'tiny'")
    assert not (tmp_path / "o").exists()


def test_template_counts_of_another_variant(profiled, tmp_path, capsys):
    for name in ("counts.json", "counts_template.json"):
        data = json.loads((profiled[0] / name).read_text())
        data["variant"] = "tiny" if name == "counts.json" else "b256_t3"
        (tmp_path / name).write_text(json.dumps(data))
    fails_in_one_line(main, capsys, ["--variant", "tiny", "--from-simulation", str(tmp_path / "counts.json"), "--profile", str(CMOS),
                    "--out", str(tmp_path / "o")], str(tmp_path / "counts_template.json"), "'b256_t3'")


def test_no_sequence_and_no_counts(tmp_path, capsys):
    fails_in_one_line(main, capsys, ["--profile", str(CMOS), "--out", str(tmp_path / "o")], "--sequence is needed")
