"""Report: report.json + self-contained report.html with charts, TransT table and the paper's 1/26."""
import json
from pathlib import Path

import pytest

from spiketrack.profiler.counts import CountsRecord, LayerCounts
from spiketrack.profiler.energy import evaluate_profile
from spiketrack.profiler.profiles import load_profile
from spiketrack.profiler.report import comparison_rows, markdown_summary, paper_figures, write_report
from spiketrack.profiler.transt import transt_summary

PROFILE_DIR = Path(__file__).resolve().parents[1] / "hw_profiles"
FAKE_MACS = {  # stands in for count_transt_macs(): the report must not depend on how it was measured
    "macs": {"backbone_template": 2_000_000_000, "backbone_search": 9_000_000_000,
             "fusion": 13_000_000_000, "head": 1_000_000_000},
    "per_frame_cached_template": 23_000_000_000, "per_frame_recomputed_template": 25_000_000_000,
    "template_size": 128, "search_size": 256, "feature_stride": 8, "counter": "test", "note": "test",
}


@pytest.fixture
def results():
    record = CountsRecord("s256_t1", "fixture", 4, "pytorch", "procedural", [
        LayerCounts("stem", "conv", "neuro", False, 1, dense_macs=10_000),
        LayerCounts("conv1", "conv", "neuro", True, 1, neurons=50, spikes=40, synops=5_000, neuron_updates=200),
        LayerCounts("attn", "attention", "host", True, 1, neurons=10, spikes=4, attention_ops=700, host_ops=50),
    ])
    profiles = [load_profile(PROFILE_DIR / f"{n}.yaml") for n in ("cmos45nm", "loihi")]
    return [evaluate_profile(record, p, sim_time_s=1e-3) for p in profiles]


@pytest.fixture
def transt(results):
    return transt_summary([r.profile for r in results], FAKE_MACS)


def test_write_report(tmp_path, results, transt):
    json_path, html_path = write_report(tmp_path / "out", results, transt, paper_figures())
    data = json.loads(json_path.read_text())
    assert data["inputs"]["counts"]["variant"] == "s256_t1"
    assert [p["path"] for p in data["profiles"]] == [str(r.profile.path) for r in results]
    assert data["profiles"][0]["figures"]["energy.e_mac"]["source"].startswith("Horowitz")
    models = {(r["profile"], b["model"]) for r in data["results"] for b in r["breakdowns"]}
    assert models == {("cmos45nm", "paper"), ("cmos45nm", "memory_aware"), ("loihi", "neuromorphic")}
    assert data["results"][1]["skipped"].keys() == {"paper", "memory_aware"}
    assert data["paper"]["ratio"] == pytest.approx(1 / 26)

    page = html_path.read_text()
    assert page.count("src='data:image/png;base64,") >= 5   # firing rate, ops, 2 x per-layer energy, stacked
    assert "TransT (architecture-only count)" in page and "23.000" in page
    assert "SpikeTrack ÷ TransT" in page and "1/26" in page
    assert "Lemaire" in page                                  # formula table
    assert "<script" not in page and "src='http" not in page   # self-contained


def test_ratio_against_transt(results, transt):
    rows = comparison_rows(results, transt, paper_figures())
    paper_row = next(r for r in rows if r["model"] == "paper")
    expected_j = (10_000 * 4.6 + (5_000 + 700) * 0.9) * 1e-12 / 4
    assert paper_row["per_frame_j"] == pytest.approx(expected_j)
    assert paper_row["ratio_to_transt"] == pytest.approx(expected_j / (23e9 * 4.6e-12))
    loihi_row = next(r for r in rows if r["profile"] == "loihi")
    assert loihi_row["transt_profile"] == "cmos45nm"            # Loihi has no E_MAC: priced on cmos45nm


def test_markdown_summary(results, transt):
    text = markdown_summary(results, transt, paper_figures())
    assert "| cmos45nm | paper |" in text and "| loihi | neuromorphic |" in text
    assert "1/26" in text and "23.00 GMACs/frame" in text
    assert "memory_aware model skipped" in text


def test_results_must_share_counts(results, transt, tmp_path):
    other = evaluate_profile(CountsRecord("b256_t3", "x", 1, "lava", "w", []), results[0].profile, 0.0)
    with pytest.raises(ValueError, match="same counts record"):
        write_report(tmp_path, [results[0], other], transt, paper_figures())
