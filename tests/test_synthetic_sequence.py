"""The embedded demo sequence: deterministic, exact ground truth, loads as an OTB sequence; GIF writer."""
from __future__ import annotations

import numpy as np
from PIL import Image

from spiketrack.data.images import read_image
from spiketrack.data.synthetic import DemoPath, _background, _target_patch, render_frame, write_demo_sequence
from spiketrack.evaluation.visualize import annotated_gif


def test_ground_truth_box_holds_the_target():
    path = DemoPath(frames=12)
    patch, background = _target_patch(), _background(path)
    for i in range(path.frames):
        frame, box = render_frame(i, path, patch, background)
        x, y, w, h = box.astype(int)
        assert 0 <= x and x + w <= path.width and 0 <= y and y + h <= path.height
        inside = frame[y:y + h, x:x + w].astype(float)
        ring = frame[max(0, y - 3):y, x:x + w].astype(float)
        # the face patch is brighter and different from the coffee background right above it
        assert abs(inside.mean() - ring.mean()) > 5 or ring.size == 0


def test_written_sequence_is_deterministic_and_loads(tmp_path):
    a = write_demo_sequence(tmp_path / "a", DemoPath(frames=8))
    b = write_demo_sequence(tmp_path / "b", DemoPath(frames=8))
    assert len(a) == 8 and a.ground_truth.shape == (8, 4) and not a.absent.any()
    np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
    np.testing.assert_array_equal(read_image(a.frames[5]), read_image(b.frames[5]))
    gif = annotated_gif(a, a.ground_truth, tmp_path / "out" / "a.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 8
