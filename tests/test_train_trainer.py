"""Trainer: parameter groups and frozen unused parameters (defect 8), overfitting a fixed batch,
exact resume, checkpoint checks, CSV log. Runs the `tiny` model on 1 thread with 2-sample batches."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from spiketrack.checkpoint import load_checkpoint, save_checkpoint
from spiketrack.errors import UserError
from spiketrack.models import build_model
from spiketrack.models.norm import BatchNormAnyRank, FrozenBatchNorm, freeze_thawed_bn, thaw_frozen_bn
from spiketrack.train.config import (DataConfig, LogConfig, LossConfig, OptimConfig, SourceConfig,
                                     TrainConfig)
from spiketrack.train.data import build_dataset
from spiketrack.train.trainer import (LOG_FIELDS, VAL_FIELDS, build_optimizer, calibrate_frozen_bn, fit,
                                      freeze_unused, high_lr, inference_form, load_init_weights, localisation_scores, train_step,
                                      validation_pairs)

SPEC_UNUSED = Path(__file__).resolve().parents[2] / "shared" / "spec" / "keys" / "unused_params_autograd.json"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(out: Path, epochs: int, backbone_bn: str = "frozen", val_pairs: int = 0, **optim) -> TrainConfig:
    """2 steps of 2 synthetic pairs per epoch; LR drops after the first epoch."""
    return TrainConfig(
        variant="tiny", output_dir=out, device="cpu", threads=1, backbone_bn=backbone_bn,
        data=DataConfig(sources=(SourceConfig("synthetic"),), samples_per_epoch=4), calibrate_samples=2,
        optim=OptimConfig(epochs=epochs, lr_drop_epoch=1, batch_size=2, **{"lr": 1e-3, **optim}),
        log=LogConfig(every=1, progress=False, val_pairs=val_pairs))


def test_parameter_groups_follow_the_official_names():
    assert high_lr("encoder.mrm.0.retriever.q_conv.0.weight", 3)
    assert high_lr("encoder.block3.0.attn.s_pos_embed", 3)
    assert high_lr("encoder.ConvBlock1_1.0.spike1.decay", 3)
    assert high_lr("decoder.conv1_ctr.0.weight", 1) and not high_lr("decoder.conv1_ctr.0.weight", 3)
    assert not high_lr("encoder.block3.0.attn.q_conv.0.weight", 1)


def test_unused_parameters_are_frozen_and_left_out_of_the_optimizer():
    torch.manual_seed(0)
    model = build_model("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = freeze_unused(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # dry run has no side effects
    # Same key structure as s256_t1, so the same 255 tensors get no gradient (spec §15).
    assert set(frozen) == set(json.loads(SPEC_UNUSED.read_text())["s256_t1"])
    optimizer = build_optimizer(model, OptimConfig(epochs=1, lr_drop_epoch=1, lr=4e-4, encoder_multiplier=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    high, low = ([names[id(p)] for p in g["params"]] for g in optimizer.param_groups)
    assert optimizer.param_groups[0]["lr"] == 4e-4 and optimizer.param_groups[1]["lr"] == pytest.approx(4e-5)
    assert not set(frozen) & (set(high) | set(low))
    assert len(high) + len(low) + len(frozen) == len(names)
    assert all(high_lr(n, 1) for n in high) and not any(high_lr(n, 1) for n in low)
    assert any(n.startswith("decoder.") for n in high)


def test_three_steps_lower_the_loss_on_a_fixed_batch(tmp_path):
    config = tiny_config(tmp_path, 1)
    dataset = build_dataset(config)
    batch = tuple(torch.stack(parts) for parts in zip(*(dataset[i] for i in range(4))))
    torch.manual_seed(0)
    model = build_model("tiny").train()
    assert calibrate_frozen_bn(model, batch[0].transpose(0, 1), batch[1][None]) == \
        sum(isinstance(m, FrozenBatchNorm) for m in model.modules())
    freeze_unused(model)
    optimizer = build_optimizer(model, OptimConfig(epochs=1, lr_drop_epoch=1, lr=5e-3, encoder_multiplier=1.0))
    losses = [train_step(model, optimizer, batch, LossConfig(), grad_clip=0.1).total.item() for _ in range(3)]
    with torch.no_grad():
        from spiketrack.train.losses import tracking_loss
        after = tracking_loss(model(batch[0].transpose(0, 1), batch[1][None]), batch[2], LossConfig()).total.item()
    assert after < losses[0], (losses, after)


def read_log(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("backbone_bn", ["frozen", "train"])
def test_resume_continues_exactly(tmp_path, backbone_bn):
    straight = fit(tiny_config(tmp_path / "straight", epochs=2, backbone_bn=backbone_bn))
    first = fit(tiny_config(tmp_path / "split", epochs=1, backbone_bn=backbone_bn))
    resumed = fit(tiny_config(tmp_path / "split", epochs=2, backbone_bn=backbone_bn),
                  resume=tmp_path / "split" / "last.pt")
    # Compared in checkpoint form: thawed BN's num_batches_tracked restarts on resume (unused: momentum 0.1).
    straight_state = inference_form(straight.model).state_dict()
    resumed_state = inference_form(resumed.model).state_dict()
    assert straight_state.keys() == resumed_state.keys()
    assert all(torch.equal(straight_state[k], resumed_state[k]) for k in straight_state)
    assert not all(torch.equal(inference_form(first.model).state_dict()[k], resumed_state[k]) for k in resumed_state)
    # Logs agree row for row (losses and LR; the LR dropped after epoch 1).
    rows_a, rows_b = read_log(tmp_path / "straight" / "train_log.csv"), read_log(tmp_path / "split" / "train_log.csv")
    assert list(rows_a[0]) == list(LOG_FIELDS) and [r["step"] for r in rows_a] == ["1", "2", "3", "4"]
    assert [{k: r[k] for k in LOG_FIELDS if k != "seconds"} for r in rows_a] == \
        [{k: r[k] for k in LOG_FIELDS if k != "seconds"} for r in rows_b]
    assert float(rows_a[-1]["lr"]) == pytest.approx(1e-4)
    final = load_checkpoint(resumed.checkpoint)
    assert resumed.checkpoint.name == "final.pt" and final.variant == "tiny"
    assert all(torch.equal(final.state_dict[k], resumed_state[k]) for k in resumed_state)
    assert final.meta["step"] == 4 and final.meta["train_config"]["variant"] == "tiny"


def test_resume_checks_the_checkpoint(tmp_path):
    model = build_model("tiny")
    weights_only = tmp_path / "weights.pt"
    save_checkpoint(weights_only, model, {})
    with pytest.raises(UserError, match="not a resumable training checkpoint"):
        fit(tiny_config(tmp_path / "run", 1), resume=weights_only)
    resumable = tmp_path / "last.pt"
    save_checkpoint(resumable, model, {}, {"optimizer": {}, "scheduler": {}})
    other = TrainConfig(**{**tiny_config(tmp_path / "run", 1).__dict__, "variant": "s256_t1"})
    with pytest.raises(UserError, match="checkpoint is for variant 'tiny', the config trains 's256_t1'"):
        fit(other, resume=resumable)


def test_init_weights_copy_matching_keys(tmp_path):
    torch.manual_seed(1)
    source = build_model("tiny")
    path = tmp_path / "init.pt"
    save_checkpoint(path, source, {})
    torch.manual_seed(2)
    target = build_model("tiny")
    assert load_init_weights(target, path) == []
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in source.state_dict().items())


def test_cli_trains_from_a_yaml_and_rejects_a_missing_resume_file(tmp_path, capsys):
    import argparse

    import yaml

    from spiketrack.train.cli import add_train_arguments, run_train_command

    config = {"variant": "tiny", "output_dir": str(tmp_path / "run"), "device": "cpu", "threads": 1,
              "calibrate_samples": 2, "data": {"sources": [{"kind": "synthetic"}], "samples_per_epoch": 2},
              "optim": {"epochs": 1, "lr_drop_epoch": 1, "batch_size": 2}, "log": {"progress": False}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert run_train_command(parser.parse_args(["--config", str(path)])) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "run" / "final.pt")
    with pytest.raises(UserError, match="no such checkpoint"):
        run_train_command(parser.parse_args(["--config", str(path), "--resume", str(tmp_path / "nope.pt")]))


def test_thawed_backbone_bn_computes_the_same_function_and_freezes_back():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    for bn in (m for m in model.modules() if isinstance(m, FrozenBatchNorm)):
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0), bn.weight.uniform_(0.5, 1.5)
    keys = list(model.state_dict())
    z, x = torch.randn(1, 1, 3, 128, 128), torch.randn(1, 1, 3, 128, 128)
    with torch.no_grad():
        before = model(z, x)["score_map"]
        count = thaw_frozen_bn(model)
        assert count == 97 and not any(isinstance(m, FrozenBatchNorm) for m in model.modules())
        thawed = model(z, x)["score_map"]  # eval mode: running statistics, same function
        assert freeze_thawed_bn(model) == count and not any(isinstance(m, BatchNormAnyRank) for m in model.modules())
        after = model(z, x)["score_map"]
    assert torch.allclose(before, thawed, atol=1e-6) and torch.equal(before, after)
    assert list(model.state_dict()) == keys


def test_training_backbone_bn_updates_statistics_and_saves_official_keys(tmp_path):
    config = replace(tiny_config(tmp_path / "run", epochs=1, backbone_bn="train", val_pairs=4), score_prior=0.1)
    result = fit(config)
    fresh = build_model("tiny")
    saved = load_checkpoint(result.checkpoint).state_dict
    assert list(saved) == list(fresh.state_dict())  # frozen again: no num_batches_tracked for backbone BN
    name = "encoder.downsample1_1.encode_bn"
    assert not torch.equal(saved[f"{name}.running_mean"], fresh.state_dict()[f"{name}.running_mean"])
    assert not torch.equal(saved[f"{name}.weight"], fresh.state_dict()[f"{name}.weight"])  # affine trained
    # The score bias started at logit(0.1) = -2.197 and moved by at most 2 Adam steps of 1e-3.
    assert saved["decoder.conv5_ctr.bias"].item() == pytest.approx(-2.1972, abs=3e-3)
    rows = read_log(tmp_path / "run" / "val_log.csv")
    assert [r["step"] for r in rows] == ["2"] and list(rows[0]) == list(VAL_FIELDS)
    assert all(0.0 <= float(rows[0][k]) <= 1.0 for k in VAL_FIELDS[2:])


def test_localisation_scores_see_whether_the_template_is_used(tmp_path):
    dataset = build_dataset(tiny_config(tmp_path, 1))
    pairs = validation_pairs(dataset, 4)
    assert pairs[0].shape == (1, 4, 3, 128, 128) and pairs[2].shape == (4, 4)

    class Oracle(torch.nn.Module):  # puts the GT box of pair i on the pair whose template is template i
        def forward(self, templates, search):
            index = [next(j for j in range(4) if torch.equal(t, pairs[0][0, j])) for t in templates[0]]
            gt = pairs[2][index]
            f = 8
            score = torch.zeros(4, 1, f, f)
            cells = ((gt[:, :2] + gt[:, 2:] / 2) * f).floor().long().clamp(0, f - 1)
            score[torch.arange(4), 0, cells[:, 1], cells[:, 0]] = 1
            size = gt[:, 2:, None, None].expand(4, 2, f, f).clone()
            offset = ((gt[:, :2] + gt[:, 2:] / 2) * f - cells)[:, :, None, None].expand(4, 2, f, f).clone()
            return {"score_map": score, "size_map": size, "offset_map": offset}

        def parameters(self):
            return iter([torch.zeros(1)])

    scores = localisation_scores(Oracle(), pairs)
    assert scores["val_iou"] == pytest.approx(1.0, abs=1e-5)
    assert scores["shuffled_iou"] < 0.9 and 0.0 <= scores["centre_iou"] < 1.0
