"""Training config: the shipped YAML loads; bad keys and values are UserErrors naming file and key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spiketrack.errors import UserError
from spiketrack.train.config import TrainConfig, config_to_dict, load_config

REPO = Path(__file__).resolve().parents[1]
MINIMAL = {
    "variant": "tiny",
    "output_dir": "runs/test",
    "data": {"sources": [{"kind": "synthetic"}], "samples_per_epoch": 8},
    "optim": {"epochs": 2, "lr_drop_epoch": 1},
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def with_value(dotted: str, value: object) -> dict:
    """MINIMAL with one (possibly nested) key set."""
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def test_shipped_tiny_configs_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths are taken from the working directory
    stage1 = load_config(REPO / "configs" / "train_tiny_stage1.yaml")
    assert isinstance(stage1, TrainConfig) and stage1.variant == "tiny" and stage1.init_checkpoint is None
    assert [s.kind for s in stage1.data.sources] == ["synthetic"]
    assert stage1.loss.box_loss_at == "gt_center"
    with pytest.raises(UserError, match="init_checkpoint: no such file runs/tiny_stage1/final.pt"):
        load_config(REPO / "configs" / "train_tiny.yaml")  # stage 2 needs stage 1's output
    (tmp_path / stage1.output_dir).mkdir(parents=True)
    (tmp_path / stage1.output_dir / "final.pt").touch()
    stage2 = load_config(REPO / "configs" / "train_tiny.yaml")
    assert stage2.init_checkpoint == stage1.output_dir / "final.pt"
    assert stage2.variant == stage1.variant and stage2.output_dir != stage1.output_dir


def test_defaults_are_the_official_values(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert (config.optim.lr, config.optim.weight_decay, config.optim.encoder_multiplier) == (4e-4, 1e-4, 0.1)
    assert (config.optim.grad_clip, config.optim.lr_gamma, config.optim.batch_size) == (0.1, 0.1, 16)
    assert (config.loss.giou_weight, config.loss.l1_weight, config.loss.focal_weight) == (2.0, 5.0, 1.0)
    assert (config.augment.search_jitter.center, config.augment.search_jitter.scale) == (3.5, 0.5)
    assert (config.augment.template_jitter.center, config.augment.template_jitter.scale) == (0.0, 0.0)
    assert config.augment.grayscale_prob == 0.05 and config.data.max_gap == 400
    assert config.log.format == "csv"


def test_exponent_without_dot_is_a_number(tmp_path):
    text = yaml.safe_dump(MINIMAL) + ""
    text = text.replace("lr_drop_epoch: 1", "lr_drop_epoch: 1\n  lr: 4e-4")
    assert load_config(write(tmp_path, text)).optim.lr == pytest.approx(4e-4)


def test_config_to_dict_round_trips(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert load_config(write(tmp_path, config_to_dict(config))) == config


@pytest.mark.parametrize("dotted, value, expected", [
    ("colour", 1, "colour: unknown key"),
    ("optim.lrr", 0.1, "optim.lrr: unknown key"),
    ("augment.search_jitter.centre", 1.0, "augment.search_jitter.centre: unknown key"),
    ("optim.lr", -1e-3, "optim.lr: must be > 0"),
    ("optim.batch_size", 0, "optim.batch_size: must be >= 1"),
    ("optim.epochs", "ten", "optim.epochs: expected an integer"),
    ("optim.epochs", 2.5, "optim.epochs: expected an integer"),
    ("variant", "s128_t1", "variant: unknown variant 's128_t1'"),
    ("data.samples_per_epoch", 0, "data.samples_per_epoch: must be >= 1"),
    ("data.sources", [], "data.sources: needs at least one source"),
    ("data.sources", [{"kind": "youtube"}], "data.sources[0].kind: must be one of"),
    ("data.sources", [{"kind": "got10k"}], "data.sources[0].path: required for kind 'got10k'"),
    ("data.sources", [{"kind": "lasot", "path": "/nonexistent/lasot"}], "data.sources[0].path: no such folder"),
    ("data.sources", [{"kind": "synthetic", "weight": 0}], "data.sources[0].weight: must be > 0"),
    ("augment.grayscale_prob", 1.5, "augment.grayscale_prob: must be a probability"),
    ("synthetic.object_size", [0.5, 0.2], "synthetic.object_size: must be [low, high]"),
    ("synthetic.object_size", [0.5], "synthetic.object_size: expected a list of 2 values"),
    ("loss.box_loss_at", "argmax", "loss.box_loss_at: must be one of gt_center, pred_peak"),
    ("log.format", "json", "log.format: only 'csv' is supported"),
    ("log.val_pairs", -1, "log.val_pairs: must be >= 0"),
    ("backbone_bn", "thawed", "backbone_bn: must be one of frozen, train"),
    ("score_prior", 1.0, "score_prior: must be in (0, 1)"),
    ("log.progress", "yes", "log.progress: expected true or false"),
    ("init_checkpoint", "/nonexistent/t1.pt", "init_checkpoint: no such file"),
    ("optim", 3, "optim: expected a mapping"),
])
def test_bad_values_name_file_and_key(tmp_path, dotted, value, expected):
    path = write(tmp_path, with_value(dotted, value))
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_missing_required_key(tmp_path):
    data = dict(MINIMAL)
    del data["variant"]
    with pytest.raises(UserError, match="variant: required key is missing"):
        load_config(write(tmp_path, data))


@pytest.mark.parametrize("text, expected", [
    ("variant: [tiny\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("", "expected a mapping"),
])
def test_malformed_files(tmp_path, text, expected):
    with pytest.raises(UserError, match=expected):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
