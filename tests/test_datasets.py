"""Dataset loaders and image decoding: the real shared sequences plus synthetic layouts and bad inputs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from spiketrack.data.datasets import (load_dataset, load_got10k_sequence, load_lasot_sequence, load_otb_sequence,
                                      load_sequence)
from spiketrack.data.images import read_image
from spiketrack.errors import UserError

SEQUENCES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sequences"


def make_frames(folder: Path, n: int, names: list[str] | None = None) -> list[Path]:
    """Write `n` tiny JPEG frames (or the given file names) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in (names or [f"{i:08d}.jpg" for i in range(1, n + 1)])]
    for i, path in enumerate(paths):
        cv2.imwrite(str(path), np.full((8, 8, 3), 10 * i, np.uint8))
    return paths


def make_otb(folder: Path, n: int = 3, lines: list[str] | None = None) -> Path:
    """A synthetic OTB-layout sequence with `n` frames and the given ground-truth lines."""
    make_frames(folder / "img", n, [f"{i:04d}.jpg" for i in range(1, n + 1)])
    lines = lines or [f"{i},{i + 1},4,5" for i in range(n)]
    (folder / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_crossing_tab_separated() -> None:
    seq = load_sequence(SEQUENCES / "Crossing")
    assert seq.name == "Crossing" and len(seq) == 120
    assert seq.ground_truth.shape == (120, 4) and seq.ground_truth.dtype == np.float64
    np.testing.assert_array_equal(seq.init_box, [205, 151, 17, 50])
    np.testing.assert_array_equal(seq.ground_truth[1], [202, 150, 19, 49])
    assert not seq.absent.any()
    assert [f.name for f in seq.frames[:2]] == ["0001.jpg", "0002.jpg"] and seq.frames[-1].name == "0120.jpg"


def test_boat1_comma_separated_without_nan() -> None:
    seq = load_otb_sequence(SEQUENCES / "boat1")
    assert len(seq) == 301
    np.testing.assert_array_equal(seq.init_box, [393, 328, 155, 319])
    assert np.isfinite(seq.ground_truth).all() and not seq.absent.any()


def test_shared_dataset_sorted_by_name() -> None:
    sequences = load_dataset(SEQUENCES)
    assert [s.name for s in sequences] == ["Crossing", "boat1", "wakeboard7"]
    assert [len(s) for s in sequences] == [120, 301, 67]


def test_sequence_folder_is_a_dataset_of_one() -> None:
    assert [s.name for s in load_dataset(SEQUENCES / "wakeboard7")] == ["wakeboard7"]


def test_read_real_frame_is_rgb_uint8() -> None:
    image = read_image(SEQUENCES / "Crossing" / "img" / "0001.jpg")
    assert image.shape == (240, 360, 3) and image.dtype == np.uint8


def test_otb_mixed_separators_and_nan_rows(tmp_path: Path) -> None:
    seq = load_otb_sequence(make_otb(tmp_path / "s", 4, ["1,2,3,4", "5\t6\t7\t8", "NaN,NaN,NaN,NaN", "9 10  11 12"]))
    assert seq.absent.tolist() == [False, False, True, False]
    np.testing.assert_array_equal(seq.ground_truth[[0, 1, 3]], [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    assert np.isnan(seq.ground_truth[2]).all()


def test_frames_in_natural_order(tmp_path: Path) -> None:
    make_frames(tmp_path / "s" / "img", 3, ["10.jpg", "2.jpg", "1.png"])
    (tmp_path / "s" / "groundtruth_rect.txt").write_text("1,1,2,2\n1,1,2,2\n1,1,2,2\n")
    assert [f.name for f in load_sequence(tmp_path / "s").frames] == ["1.png", "2.jpg", "10.jpg"]


def test_lasot_class_folders_and_flags(tmp_path: Path) -> None:
    for name, occlusion, out_of_view in [("airplane-1", "0,1,0", "0,0,0"), ("airplane-2", "0,0,0", "0,0,1")]:
        folder = tmp_path / "airplane" / name
        make_frames(folder / "img", 3)
        (folder / "groundtruth.txt").write_text("1,2,3,4\n2,3,4,5\n0,0,0,0\n")
        (folder / "full_occlusion.txt").write_text(occlusion + "\n")
        (folder / "out_of_view.txt").write_text(out_of_view)
    sequences = load_dataset(tmp_path)
    assert [s.name for s in sequences] == ["airplane-1", "airplane-2"]
    assert sequences[0].absent.tolist() == [False, True, False]
    assert load_lasot_sequence(tmp_path / "airplane" / "airplane-2").absent.tolist() == [False, False, True]


def test_got10k_with_and_without_absence_label(tmp_path: Path) -> None:
    for name in ("GOT-10k_Val_000001", "GOT-10k_Val_000002"):
        make_frames(tmp_path / name, 3)
        (tmp_path / name / "groundtruth.txt").write_text("1,2,3,4\n1,2,3,4\n1,2,3,4\n")
    (tmp_path / "GOT-10k_Val_000001" / "absence.label").write_text("0\n1\n0\n")
    first, second = load_dataset(tmp_path)
    assert first.absent.tolist() == [False, True, False] and not second.absent.any()
    assert load_got10k_sequence(tmp_path / "GOT-10k_Val_000002").frames[0].name == "00000001.jpg"


def error_for(call, *args) -> str:
    """Run `call(*args)`, expect a UserError and return its one-line message."""
    with pytest.raises(UserError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_img_folder(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "groundtruth_rect.txt").write_text("1,2,3,4\n")
    assert str(tmp_path / "s" / "img") in error_for(load_sequence, tmp_path / "s")


def test_img_folder_without_frames(tmp_path: Path) -> None:
    (tmp_path / "s" / "img").mkdir(parents=True)
    (tmp_path / "s" / "groundtruth_rect.txt").write_text("1,2,3,4\n")
    assert "no frames" in error_for(load_sequence, tmp_path / "s")


def test_zero_size_image(tmp_path: Path) -> None:
    folder = make_otb(tmp_path / "s", 3)
    (folder / "img" / "0002.jpg").write_bytes(b"")
    message = error_for(load_otb_sequence, folder)
    assert str(folder / "img" / "0002.jpg") in message and "empty" in message


def test_wrong_column_count(tmp_path: Path) -> None:
    folder = make_otb(tmp_path / "s", 3, ["1,2,3,4", "1,2,3", "1,2,3,4"])
    message = error_for(load_otb_sequence, folder)
    assert str(folder / "groundtruth_rect.txt") in message and "line 2" in message and "got 3" in message


def test_non_numeric_line(tmp_path: Path) -> None:
    folder = make_otb(tmp_path / "s", 3, ["1,2,3,4", "1,2,3,4", "1,x,3,4"])
    message = error_for(load_otb_sequence, folder)
    assert str(folder / "groundtruth_rect.txt") in message and "line 3" in message and "non-numeric" in message


def test_box_frame_count_mismatch(tmp_path: Path) -> None:
    folder = make_otb(tmp_path / "s", 3, ["1,2,3,4", "1,2,3,4"])
    message = error_for(load_otb_sequence, folder)
    assert str(folder / "groundtruth_rect.txt") in message and "2 boxes for 3 frames" in message


def test_missing_ground_truth(tmp_path: Path) -> None:
    make_frames(tmp_path / "s" / "img", 2)
    assert "groundtruth_rect.txt: no such file" in error_for(load_otb_sequence, tmp_path / "s")


def test_bad_lasot_flags(tmp_path: Path) -> None:
    folder = tmp_path / "cat-1"
    make_frames(folder / "img", 3)
    (folder / "groundtruth.txt").write_text("1,2,3,4\n1,2,3,4\n1,2,3,4\n")
    (folder / "full_occlusion.txt").write_text("0,2,0")
    (folder / "out_of_view.txt").write_text("0,0")
    assert "full_occlusion.txt" in error_for(load_lasot_sequence, folder)
    (folder / "full_occlusion.txt").write_text("0,1,0")
    assert "out_of_view.txt: 2 flags for 3 frames" in error_for(load_lasot_sequence, folder)


def test_folder_without_sequences(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "no tracking sequences" in error_for(load_dataset, tmp_path)
    assert "no such dataset folder" in error_for(load_dataset, tmp_path / "nope")


def test_read_image_errors(tmp_path: Path) -> None:
    assert "no such file" in error_for(read_image, tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert f"{tmp_path / 'empty.jpg'}: empty file" == error_for(read_image, tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    assert "cannot decode image" in error_for(read_image, tmp_path / "text.jpg")


def test_read_image_rgb_order_and_grayscale(tmp_path: Path) -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((4, 5), 77, np.uint8))
    np.testing.assert_array_equal(read_image(tmp_path / "red.png")[0, 0], [200, 0, 0])
    gray = read_image(tmp_path / "gray.png")
    assert gray.shape == (4, 5, 3) and (gray == 77).all()
