"""OPE metrics on hand-computed cases, results files, and the tracker comparison report."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spiketrack.data.sequence import Sequence
from spiketrack.errors import UserError
from spiketrack.evaluation.ope import (center_error, evaluate_sequence, evaluate_tracker, iou,
                                       normalized_center_error, read_results, write_results)
from spiketrack.evaluation.report import compare_trackers, format_table, run_eval

BOX = [10.0, 10.0, 10.0, 10.0]


def make_seq(gt: list[list[float]], absent: list[bool] | None = None, name: str = "s") -> Sequence:
    """An in-memory sequence (frame paths are never opened by the metrics)."""
    gt_array = np.asarray(gt, dtype=np.float64)
    flags = np.zeros(len(gt), bool) if absent is None else np.asarray(absent)
    return Sequence(name, tuple(Path(f"{i}.jpg") for i in range(len(gt))), gt_array, flags)


def test_iou_hand_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4, [0, 0, 0, 10], [0, 0, 10, 10]])
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [2, 2, 5, 5]])
    np.testing.assert_allclose(iou(a, b), [50 / 150, 0, 1, 0, 0, 25 / 100])


def test_center_errors() -> None:
    gt = np.array([[0, 0, 10, 20], [0, 0, 10, 20]], dtype=float)
    pred = np.array([[3, 4, 10, 20], [np.nan] * 4])
    np.testing.assert_allclose(center_error(pred, gt), [5, np.inf])
    np.testing.assert_allclose(normalized_center_error(np.array([[5, 10, 10, 20]]), gt[:1]), [np.sqrt(0.5)])
    # a box of another size shifts the center by half the size difference
    np.testing.assert_allclose(center_error(np.array([[0, 0, 16, 28]]), gt[:1]), [5])


def test_perfect_tracker_auc_is_20_of_21() -> None:
    seq = make_seq([BOX] * 5)
    m = evaluate_sequence(seq.ground_truth, seq)
    np.testing.assert_array_equal(m.success_curve, [1.0] * 20 + [0.0])
    assert m.auc == pytest.approx(20 / 21)
    assert m.precision == 1.0 and m.norm_precision == 1.0
    assert (m.n_frames, m.n_valid) == (5, 5)


def test_shifted_box_precision() -> None:
    seq = make_seq([BOX] * 4)
    pred = np.array([BOX, BOX, [40, 10, 10, 10], [40, 10, 10, 10]])  # 30 px off, no overlap
    m = evaluate_sequence(pred, seq)
    assert m.precision == 0.5 and m.precision_curve[29] == 0.5 and m.precision_curve[30] == 1.0
    assert m.norm_precision == 0.5  # 30 / 10 = 3.0 > 0.2
    assert m.auc == pytest.approx(0.5 * 20 / 21)
    pred[2:, 0] = 13  # 3 px off: inside 20 px, 0.3 normalized
    m = evaluate_sequence(pred, seq)
    assert m.precision == 1.0 and m.norm_precision_curve[29] == 0.5 and m.norm_precision_curve[31] == 1.0
    assert iou(pred[2:3], seq.ground_truth[2:3])[0] == pytest.approx(70 / 130)  # 0.538 > 0.5, < 0.55
    assert m.success_curve[10] == 1.0 and m.success_curve[11] == 0.5
    assert m.auc == pytest.approx((2 * 20 + 2 * 11) / (4 * 21))


def test_invalid_frames_are_excluded() -> None:
    gt = [BOX, [np.nan] * 4, [0, 0, 0, 0], BOX, BOX]
    seq = make_seq(gt, absent=[False, False, False, True, False])
    pred = np.array([BOX, [99, 99, 1, 1], [99, 99, 1, 1], [99, 99, 1, 1], BOX])
    m = evaluate_sequence(pred, seq)
    assert m.n_valid == 2 and m.auc == pytest.approx(20 / 21) and m.precision == 1.0


def test_nan_prediction_is_a_failure() -> None:
    seq = make_seq([BOX] * 4)
    pred = np.array([BOX, BOX, BOX, [np.nan] * 4])
    m = evaluate_sequence(pred, seq)
    np.testing.assert_allclose(m.success_curve, [0.75] * 20 + [0.0])
    assert m.precision == 0.75 and m.norm_precision == 0.75


def test_shape_mismatch_and_mean_over_sequences() -> None:
    a, b = make_seq([BOX] * 2, name="a"), make_seq([BOX] * 2, name="b")
    with pytest.raises(UserError, match="'a' with 2 frames"):
        evaluate_sequence(np.zeros((3, 4)), a)
    result = evaluate_tracker({"a": a.ground_truth, "b": np.array([BOX, [50, 50, 5, 5]])}, [a, b], "t")
    assert result.auc == pytest.approx((20 / 21 + 10 / 21) / 2)
    assert [m.name for m in result.sequences] == ["a", "b"] and result.precision == 0.75
    with pytest.raises(UserError, match="no results for sequence 'b'"):
        evaluate_tracker({"a": a.ground_truth}, [a, b])


def test_results_roundtrip_and_separators(tmp_path: Path) -> None:
    boxes = np.array([[1.234, 2, 3, 4], [np.nan] * 4])
    write_results(tmp_path / "r.txt", boxes)
    assert (tmp_path / "r.txt").read_text().splitlines()[0] == "1.23,2.00,3.00,4.00"
    np.testing.assert_array_equal(read_results(tmp_path / "r.txt"), [[1.23, 2, 3, 4], [np.nan] * 4])
    (tmp_path / "t.txt").write_text("1\t2\t3\t4\n5 6 7 8\n")
    np.testing.assert_array_equal(read_results(tmp_path / "t.txt"), [[1, 2, 3, 4], [5, 6, 7, 8]])
    (tmp_path / "bad.txt").write_text("1,2,3,4\n1,2,three,4\n")
    with pytest.raises(UserError, match=r"bad\.txt: line 2: non-numeric"):
        read_results(tmp_path / "bad.txt")


def make_dataset(root: Path, gt: dict[str, list[list[float]]]) -> Path:
    """Tiny OTB-layout sequences (8x8 frames) with the given ground truth."""
    for name, boxes in gt.items():
        (root / name / "img").mkdir(parents=True)
        for i in range(len(boxes)):
            cv2.imwrite(str(root / name / "img" / f"{i:04d}.jpg"), np.zeros((8, 8, 3), np.uint8))
        np.savetxt(root / name / "groundtruth_rect.txt", boxes, fmt="%g", delimiter="\t")
    return root


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data", {"seqA": [BOX] * 4, "seqB": [BOX] * 2})


def test_compare_two_trackers(tmp_path: Path, dataset: Path) -> None:
    results = tmp_path / "results"
    write_results(results / "good" / "seqA.txt", np.array([BOX] * 4))
    write_results(results / "good" / "seqB.txt", np.array([BOX] * 2))
    write_results(results / "bad" / "seqA.txt", np.array([BOX, BOX, [50, 50, 5, 5], [50, 50, 5, 5]]))
    write_results(results / "bad" / "seqA_time.txt", np.zeros((4, 4)))
    report = compare_trackers(results, dataset, tmp_path / "out")
    assert [t.name for t in report.trackers] == ["good", "bad"] and report.sequences == ("seqA",)
    assert report.trackers[0].auc == pytest.approx(20 / 21) and report.trackers[1].auc == pytest.approx(10 / 21)
    assert report.missing == {"bad": ("seqB",)} and report.unmatched == {"bad": ("seqA_time.txt",)}
    for png in ("success.png", "precision.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["trackers"]["bad"]["precision_20"] == 0.5
    assert set(metrics["trackers"]["good"]["per_sequence"]) == {"seqA", "seqB"}
    table = format_table(report)
    assert "missing results for bad: seqB" in table
    lines = table.splitlines()
    assert lines[3].split() == ["good", "0.952", "1.000", "1.000"] and lines[4].split()[:2] == ["bad", "0.476"]
    assert next(line for line in lines if line.startswith("seqB")).split() == ["seqB", "2", "0.952", "-"]


def test_single_tracker_folder_and_run_eval(tmp_path: Path, dataset: Path) -> None:
    write_results(tmp_path / "mytracker" / "seqA.txt", np.array([BOX] * 4))
    table = run_eval(tmp_path / "mytracker", dataset, tmp_path / "out")
    assert "mytracker" in table and "OPE on 1 of 2 sequences" in table
    assert (tmp_path / "out" / "success.png").is_file()


def test_results_length_mismatch_names_file(tmp_path: Path, dataset: Path) -> None:
    write_results(tmp_path / "t" / "seqA.txt", np.array([BOX] * 3))
    with pytest.raises(UserError) as info:
        compare_trackers(tmp_path / "t", dataset, tmp_path / "out")
    assert str(info.value) == f"{tmp_path / 't' / 'seqA.txt'}: 3 boxes but sequence 'seqA' has 4 frames"
    assert not (tmp_path / "out").exists()


def test_no_results(tmp_path: Path, dataset: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no results"):
        compare_trackers(tmp_path / "empty", dataset, tmp_path / "out")
    write_results(tmp_path / "other" / "nothere.txt", np.array([BOX]))
    with pytest.raises(UserError, match=r"no dataset sequence has results from every tracker \(other: 0/2\)"):
        compare_trackers(tmp_path / "other", dataset, tmp_path / "out")
