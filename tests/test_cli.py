"""CLI behaviour: tracking a real sequence end to end, and one-line errors for bad input (no partial output)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from spiketrack.checkpoint import save_checkpoint
from spiketrack.cli import main
from spiketrack.models import build_model

from conftest import fails_in_one_line


def _small_sequence(src, dst, frames=6):
    (dst / "img").mkdir(parents=True)
    for f in sorted((src / "img").iterdir())[:frames]:
        shutil.copy(f, dst / "img" / f.name)
    lines = (src / "groundtruth_rect.txt").read_text().splitlines()[:frames]
    (dst / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    return dst


@pytest.fixture()
def seq(tmp_path, sequences_dir):
    return _small_sequence(sequences_dir / "Crossing", tmp_path / "Crossing")



def test_track_crossing_writes_one_line_per_frame(tmp_path, sequences_dir, capsys):
    out = tmp_path / "res" / "Crossing.txt"
    assert main(["track", "--sequence", str(sequences_dir / "Crossing"), "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "frames/s" in stdout and "weights:" in stdout
    boxes = np.loadtxt(out, delimiter=",")
    gt = np.loadtxt(sequences_dir / "Crossing" / "groundtruth_rect.txt")
    assert boxes.shape == (120, 4) and np.isfinite(boxes).all()
    np.testing.assert_allclose(boxes[0], gt[0])
    assert (boxes[1:, 2:] >= 10).all() and (boxes[:, 0] <= 360).all()


def test_eval_command(tmp_path, sequences_dir, seq, capsys):
    res = tmp_path / "results" / "spiketrack"
    assert main(["track", "--sequence", str(seq), "--out", str(res / "Crossing.txt"), "--no-progress"]) == 0
    assert main(["eval", "--results", str(tmp_path / "results"), "--dataset", str(seq.parent),
                 "--out", str(tmp_path / "ev")]) == 0
    assert "AUC" in capsys.readouterr().out
    assert (tmp_path / "ev" / "success.png").stat().st_size > 0


def test_missing_image_folder(tmp_path, seq, capsys):
    shutil.rmtree(seq / "img")
    out = tmp_path / "o.txt"
    fails_in_one_line(main, capsys, ["track", "--sequence", str(seq), "--out", str(out)], str(seq))
    assert not out.exists()


def test_zero_size_image_leaves_no_output(tmp_path, seq, capsys):
    frame = sorted((seq / "img").iterdir())[3]
    frame.write_bytes(b"")
    out = tmp_path / "o.txt"
    fails_in_one_line(main, capsys, ["track", "--sequence", str(seq), "--out", str(out), "--no-progress"], str(frame), "empty")
    assert not out.exists() and not list(tmp_path.glob(".o.txt*"))


def test_wrong_column_count(tmp_path, seq, capsys):
    gt = seq / "groundtruth_rect.txt"
    gt.write_text(gt.read_text().replace("\t50\n", "\n", 1))
    fails_in_one_line(main, capsys, ["track", "--sequence", str(seq), "--out", str(tmp_path / "o.txt")], str(gt))


@pytest.mark.parametrize("box, why", [("205\t151\t0\t50", "zero area"), ("5000\t151\t17\t50", "outside")])
def test_bad_initial_box(tmp_path, seq, capsys, box, why):
    gt = seq / "groundtruth_rect.txt"
    lines = gt.read_text().splitlines()
    gt.write_text("\n".join([box] + lines[1:]) + "\n")
    out = tmp_path / "o.txt"
    fails_in_one_line(main, capsys, ["track", "--sequence", str(seq), "--out", str(out), "--no-progress"], why)
    assert not out.exists()


def test_checkpoint_of_another_variant(tmp_path, seq, capsys):
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("tiny"))
    fails_in_one_line(main, capsys, ["track", "--sequence", str(seq), "--out", str(tmp_path / "o.txt"), "--checkpoint", str(ckpt),
                    "--variant", "s256_t1"], str(ckpt), "tiny")


def test_truncated_checkpoint(tmp_path, seq, capsys):
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("tiny"))
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    fails_in_one_line(main, capsys, ["track", "--sequence", str(seq), "--out", str(tmp_path / "o.txt"), "--checkpoint", str(ckpt)],
           str(ckpt))


def test_official_checkpoint_must_be_imported_first(tmp_path, seq, capsys):
    import torch

    raw = tmp_path / "official.pth.tar"
    torch.save({"net": build_model("tiny").state_dict()}, raw)
    fails_in_one_line(main, capsys, ["track", "--sequence", str(seq), "--out", str(tmp_path / "o.txt"), "--checkpoint", str(raw)],
           "import-official")


def test_info_lists_parameters(capsys):
    assert main(["info", "--variant", "b256_t3"]) == 0
    assert "40,078,186" in capsys.readouterr().out


def test_unknown_variant(capsys):
    fails_in_one_line(main, capsys, ["info", "--variant", "huge"], "unknown variant")
