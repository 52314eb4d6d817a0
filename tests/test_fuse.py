"""BN folding for inference: same function; in float32 spike flips stay within the float-order noise."""
from __future__ import annotations

import numpy as np
import torch

from spiketrack.models import build_model
from spiketrack.models.fuse import fuse_for_inference
from spiketrack.models.procedural import load_procedural_weights, procedural_inputs
from spiketrack.models.probes import record_spikes

from conftest import SPEC


def test_fused_model_has_no_batchnorm_and_keeps_outputs_tiny():
    model = load_procedural_weights(build_model("tiny")).double()
    fused = fuse_for_inference(model)
    assert not [m for m in fused.modules() if "BatchNorm" in type(m).__name__]
    z, x = procedural_inputs(1, 128)
    with torch.no_grad(), record_spikes(model) as a, record_spikes(fused) as b:
        ref, out = model(z.double(), x.double()), fused(z.double(), x.double())
    flips = sum(int((a[k].c_counts - b[k].c_counts).abs().sum()) for k in a)
    total = sum(int(a[k].t_counts.sum()) for k in a)
    assert flips / total < 1e-3
    if flips == 0:
        torch.testing.assert_close(out["score_map"], ref["score_map"], rtol=0, atol=1e-9)


def test_fused_s256_t1_within_fixture_noise():
    ref = np.load(SPEC / "fixtures" / "fixture_s256_t1.npz")
    fused = fuse_for_inference(load_procedural_weights(build_model("s256_t1")))
    z, x = procedural_inputs(1, 256)
    with torch.no_grad(), record_spikes(fused) as spikes:
        fused(z, x)
    allowed = 3 * ref["noise_f64/channel_l1_rel"] + 1e-3
    for name, limit in zip(ref["spk_layers"], allowed):
        total = ref[f"spk/{name}/t_counts"].sum()
        rel = np.abs(spikes[name].c_counts.numpy() - ref[f"spk/{name}/c_counts"]).sum() / max(1, total)
        assert rel <= limit, (name, rel, limit)
