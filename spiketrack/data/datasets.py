"""Loaders for the common single-object tracking layouts (OTB/UAV123, LaSOT, GOT-10k) into `Sequence`.

Layouts (boxes are `x,y,w,h` in pixels, 0-based top-left, one line per frame):
  OTB / UAV123  <seq>/img/<frame>.jpg + <seq>/groundtruth_rect.txt (comma, tab or space separated;
                `NaN` rows mark frames without a visible target)
  LaSOT         <seq>/img/<frame>.jpg + groundtruth.txt + full_occlusion.txt + out_of_view.txt
                (each flag file: one line of comma-separated 0/1); class folders `airplane/airplane-1`
  GOT-10k       <seq>/<frame>.jpg + groundtruth.txt [+ absence.label, one 0/1 per line]
Frames without a usable box (NaN row or absence flag) get `absent=True`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from spiketrack.data.sequence import Sequence
from spiketrack.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
_SEPARATORS = re.compile(r"[,\s]+")


def _natural_key(path: Path) -> tuple:
    """Sort key that orders `2.jpg` before `10.jpg` (and zero-padded names as usual)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def list_frames(folder: Path) -> tuple[Path, ...]:
    """Image files of `folder` in natural name order; UserError if the folder is missing, has
    no images, or holds an empty (zero-byte) image."""
    if not folder.is_dir():
        raise UserError("missing image folder", folder)
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                    key=_natural_key)
    if not frames:
        raise UserError("no frames (expected .jpg, .png or .bmp images)", folder)
    for frame in frames:
        if frame.stat().st_size == 0:
            raise UserError("empty image file", frame)
    return tuple(frames)


def _read_lines(path: Path) -> list[str]:
    """Lines of a text file (annotations, results) without trailing blank lines; UserError if missing or binary."""
    if not path.is_file():
        raise UserError("no such file", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError("not a text file", path) from exc
    lines = text.rstrip().splitlines()
    if not lines:
        raise UserError("empty file", path)
    return lines


def parse_boxes(path: Path) -> np.ndarray:
    """Read an (N, 4) float64 `x,y,w,h` box file (comma, tab or space separated; `NaN` allowed)."""
    boxes = []
    for number, line in enumerate(_read_lines(path), start=1):
        fields = [f for f in _SEPARATORS.split(line.strip()) if f]
        if len(fields) != 4:
            raise UserError(f"line {number}: expected 4 values x,y,w,h, got {len(fields)}: {line.strip()!r}", path)
        try:
            values = [float(f) for f in fields]
        except ValueError as exc:
            raise UserError(f"line {number}: non-numeric value in {line.strip()!r}", path) from exc
        if any(np.isinf(values)):
            raise UserError(f"line {number}: infinite value in {line.strip()!r}", path)
        boxes.append(values)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def parse_flags(path: Path) -> np.ndarray:
    """Read a 0/1 flag file (one line of comma-separated values, or one value per line) as bool (N,)."""
    tokens = [t for t in _SEPARATORS.split(" ".join(_read_lines(path))) if t]
    bad = [t for t in tokens if t not in ("0", "1")]
    if bad:
        raise UserError(f"expected only 0/1 flags, found {bad[0]!r}", path)
    return np.asarray([t == "1" for t in tokens], dtype=bool)


def _check_count(what: str, count: int, n_frames: int, path: Path) -> None:
    """UserError naming `path` if an annotation does not have one entry per frame."""
    if count != n_frames:
        raise UserError(f"{count} {what} for {n_frames} frames (one per frame expected)", path)


def _build(folder: Path, frames: tuple[Path, ...], gt_path: Path, flag_paths: tuple[Path, ...]) -> Sequence:
    """Assemble a `Sequence` after checking every annotation has one entry per frame."""
    boxes = parse_boxes(gt_path)
    _check_count("boxes", len(boxes), len(frames), gt_path)
    absent = np.isnan(boxes).any(axis=1)
    for flag_path in flag_paths:
        flags = parse_flags(flag_path)
        _check_count("flags", len(flags), len(frames), flag_path)
        absent |= flags
    return Sequence(name=folder.name, frames=frames, ground_truth=boxes, absent=absent)


def load_otb_sequence(folder: str | Path) -> Sequence:
    """OTB-2015 / UAV123 (OTB-style copy): `img/` frames + `groundtruth_rect.txt`."""
    folder = Path(folder)
    return _build(folder, list_frames(folder / "img"), folder / "groundtruth_rect.txt", ())


def load_lasot_sequence(folder: str | Path) -> Sequence:
    """LaSOT: `img/` frames + `groundtruth.txt`; absent = full occlusion | out of view."""
    folder = Path(folder)
    flags = (folder / "full_occlusion.txt", folder / "out_of_view.txt")
    return _build(folder, list_frames(folder / "img"), folder / "groundtruth.txt", flags)


def load_got10k_sequence(folder: str | Path) -> Sequence:
    """GOT-10k: frames in the folder itself + `groundtruth.txt` [+ `absence.label`]."""
    folder = Path(folder)
    absence = folder / "absence.label"
    flags = (absence,) if absence.exists() else ()
    return _build(folder, list_frames(folder), folder / "groundtruth.txt", flags)


def detect_layout(folder: Path) -> str | None:
    """'otb', 'lasot' or 'got10k' from the annotation files present; None if `folder` is no sequence."""
    if (folder / "groundtruth_rect.txt").is_file():
        return "otb"
    if (folder / "groundtruth.txt").is_file():
        return "lasot" if (folder / "img").is_dir() or (folder / "full_occlusion.txt").exists() else "got10k"
    return None


_LOADERS = {"otb": load_otb_sequence, "lasot": load_lasot_sequence, "got10k": load_got10k_sequence}


def load_sequence(folder: str | Path) -> Sequence:
    """Load one sequence, detecting its layout (OTB/UAV123, LaSOT or GOT-10k)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("no such sequence folder", folder)
    layout = detect_layout(folder)
    if layout is None:
        raise UserError("not a tracking sequence (no groundtruth_rect.txt or groundtruth.txt)", folder)
    return _LOADERS[layout](folder)


def sequence_folders(folder: Path) -> list[Path]:
    """Sequence folders at or below `folder` (a sequence's own sub-folders are not searched)."""
    if detect_layout(folder) is not None:
        return [folder]
    children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [seq for child in children for seq in sequence_folders(child)]


def load_dataset(folder: str | Path) -> list[Sequence]:
    """All sequences under `folder` (itself a sequence, a flat dataset, or LaSOT class folders), by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("no such dataset folder", folder)
    sequences = [load_sequence(f) for f in sequence_folders(folder)]
    if not sequences:
        raise UserError("no tracking sequences found (OTB, LaSOT or GOT-10k layout expected)", folder)
    return sorted(sequences, key=lambda s: s.name)
