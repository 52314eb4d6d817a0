"""Training configuration: typed dataclasses loaded from YAML, every key and value checked.

Defaults are the official values (spec §11). Relative paths are taken relative to the
current working directory, like the paths given on the command line.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spiketrack.errors import UserError
from spiketrack.models.config import VARIANTS

SOURCE_KINDS = ("synthetic", "got10k", "lasot", "otb")
BOX_LOSS_LOCATIONS = ("gt_center", "pred_peak")
DEVICES = ("auto", "cpu", "cuda")
BACKBONE_BN_MODES = ("frozen", "train")


@dataclass(frozen=True)
class SourceConfig:
    """One training data source; sources are drawn with probability proportional to `weight`."""

    kind: str  # synthetic | got10k | lasot | otb
    path: Path | None = None  # dataset root (not used by `synthetic`)
    weight: float = 1.0


@dataclass(frozen=True)
class DataConfig:
    """What one epoch draws: sources, number of pairs, frame gap, loader workers."""

    sources: tuple[SourceConfig, ...]
    samples_per_epoch: int = 60000
    max_gap: int = 400  # MAX_SAMPLE_INTERVAL: templates/search within base frame +- max_gap
    num_workers: int = 0


@dataclass(frozen=True)
class JitterConfig:
    """Box jitter before cropping: wh *= exp(N(0,1)*scale), centre += sqrt(w'h')*center*(U-0.5)."""

    center: float = 0.0
    scale: float = 0.0


@dataclass(frozen=True)
class AugmentConfig:
    """OSTrack-style pair augmentation (spec §11)."""

    crop_factor: float = 4.0  # crop side = factor * sqrt(w*h), for templates and search
    template_jitter: JitterConfig = JitterConfig(0.0, 0.0)
    search_jitter: JitterConfig = JitterConfig(3.5, 0.5)
    grayscale_prob: float = 0.05  # joint: all crops of a pair
    joint_flip_prob: float = 0.5  # joint: all crops of a pair
    set_flip_prob: float = 0.5  # per set: templates and search decided separately
    brightness: float = 0.2  # per image: factor U(1-b, 1+b)


@dataclass(frozen=True)
class SyntheticConfig:
    """Pair synthesis from still images: how the 'object' box and its frame-to-frame motion are drawn."""

    object_size: tuple[float, float] = (0.1, 0.4)  # sqrt(w*h) as a fraction of the image's short side
    max_aspect: float = 2.0  # object aspect w/h in [1/a, a]
    shift: float = 1.0  # translation between frames, up to this many object sizes per axis
    scale_sigma: float = 0.25  # zoom exp(N(0, sigma)) between frames
    aspect_sigma: float = 0.1  # aspect change exp(N(0, sigma))
    max_rotation: float = 10.0  # degrees
    blur_prob: float = 0.3
    max_blur_sigma: float = 1.5  # pixels
    color_jitter: float = 0.15  # per-channel gain U(1-c, 1+c)
    occlusion_prob: float = 0.3  # search frame only
    max_occlusion: float = 0.3  # occluder area as a fraction of the object area
    # Probability that the object is a patch cut from another image and pasted on the scene, moving
    # independently of the background (which then moves by `background_shift` object sizes at most);
    # otherwise the object is a region of the scene and moves with it.
    paste_prob: float = 0.0
    background_shift: float = 0.25
    # Up to this many distractors per frame: patches like a pasted object (size x U(0.7, 1.4)), 1 to 2 object
    # sizes from the object, so that only the template tells the object apart.
    max_distractors: int = 0


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + StepLR + gradient clipping (spec §11)."""

    epochs: int
    lr_drop_epoch: int
    batch_size: int = 16  # per process
    lr: float = 4e-4
    weight_decay: float = 1e-4
    encoder_multiplier: float = 0.1  # LR factor for backbone parameters
    lr_gamma: float = 0.1
    grad_clip: float = 0.1  # global gradient norm


@dataclass(frozen=True)
class LossConfig:
    """L = giou_weight*GIoU + l1_weight*L1 + focal_weight*focal; where the box is decoded (defect 13)."""

    giou_weight: float = 2.0
    l1_weight: float = 5.0
    focal_weight: float = 1.0
    box_loss_at: str = "gt_center"  # gt_center (fixed) | pred_peak (official)


@dataclass(frozen=True)
class LogConfig:
    """Training log: CSV rows averaged over `every` steps, optional tqdm bar."""

    format: str = "csv"
    every: int = 10
    progress: bool = True
    val_pairs: int = 0  # held-out synthetic pairs scored after every epoch (val_log.csv); 0 = off


@dataclass(frozen=True)
class TrainConfig:
    """A complete training run."""

    variant: str
    output_dir: Path
    data: DataConfig
    optim: OptimConfig
    seed: int = 0
    init_checkpoint: Path | None = None  # weights loaded strict=False (MODEL.PRE_TRAINED, defect 2)
    calibrate_samples: int = 16  # from random init only: pairs used to set frozen-BN statistics; 0 = off
    # frozen: backbone BN statistics/affine stay fixed (official); train: they train as regular BN (batch
    # statistics, trainable affine) and are frozen again in every saved checkpoint (training from scratch)
    backbone_bn: str = "frozen"
    # from random init only: the score map's output bias starts at logit(score_prior), CenterNet's focal-loss
    # prior, instead of the official default init (which spends the first steps pushing every score down)
    score_prior: float | None = None
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads per process; 0 keeps PyTorch's default
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    log: LogConfig = field(default_factory=LogConfig)


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML; any problem is a UserError naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise UserError("no such config file", path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"not valid YAML: {exc}", path) from exc
    try:
        config = _convert(TrainConfig, raw, "")
        validate(config)
    except _ConfigError as exc:
        raise UserError(str(exc), path) from None
    return config


def validate(config: TrainConfig) -> None:
    """Value checks beyond types (raises _ConfigError; `load_config` names the file)."""
    _require(config.variant in VARIANTS, "variant",
             f"unknown variant {config.variant!r} (known: {', '.join(VARIANTS)})")
    _require(config.seed >= 0, "seed", "must be >= 0")
    _require(config.device in DEVICES, "device", f"must be one of {', '.join(DEVICES)}")
    _require(config.threads >= 0, "threads", "must be >= 0")
    _require(config.calibrate_samples >= 0, "calibrate_samples", "must be >= 0")
    _require(config.backbone_bn in BACKBONE_BN_MODES, "backbone_bn", f"must be one of {', '.join(BACKBONE_BN_MODES)}")
    _require(config.log.val_pairs >= 0, "log.val_pairs", "must be >= 0")
    _require(config.score_prior is None or 0 < config.score_prior < 1, "score_prior", "must be in (0, 1)")
    _require(config.init_checkpoint is None or config.init_checkpoint.is_file(), "init_checkpoint",
             f"no such file {config.init_checkpoint}")
    _validate_data(config.data)
    _validate_augment(config.augment)
    _validate_synthetic(config.synthetic)
    _validate_optim(config.optim)
    _validate_loss(config.loss)
    _require(config.log.format == "csv", "log.format", "only 'csv' is supported")
    _require(config.log.every >= 1, "log.every", "must be >= 1")


def config_to_dict(config: Any) -> Any:
    """Plain YAML/checkpoint-safe form (dicts, lists, numbers, strings) of a config dataclass."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (tuple, list)):
        return [config_to_dict(v) for v in config]
    return str(config) if isinstance(config, Path) else config


class _ConfigError(Exception):
    """A bad key or value, message prefixed with its dotted key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}" if key else message)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise _ConfigError(key, message)


def _validate_data(data: DataConfig) -> None:
    _require(len(data.sources) > 0, "data.sources", "needs at least one source")
    for i, src in enumerate(data.sources):
        key = f"data.sources[{i}]"
        _require(src.kind in SOURCE_KINDS, f"{key}.kind", f"must be one of {', '.join(SOURCE_KINDS)}, got {src.kind!r}")
        _require(src.weight > 0 and math.isfinite(src.weight), f"{key}.weight", "must be > 0")
        if src.kind != "synthetic":
            _require(src.path is not None, f"{key}.path", f"required for kind {src.kind!r}")
            _require(src.path.is_dir(), f"{key}.path", f"no such folder {src.path}")
    _require(data.samples_per_epoch >= 1, "data.samples_per_epoch", "must be >= 1")
    _require(data.max_gap >= 0, "data.max_gap", "must be >= 0")
    _require(data.num_workers >= 0, "data.num_workers", "must be >= 0")


def _validate_augment(aug: AugmentConfig) -> None:
    _require(aug.crop_factor > 0, "augment.crop_factor", "must be > 0")
    for name in ("template_jitter", "search_jitter"):
        jitter = getattr(aug, name)
        _require(jitter.center >= 0, f"augment.{name}.center", "must be >= 0")
        _require(jitter.scale >= 0, f"augment.{name}.scale", "must be >= 0")
    for name in ("grayscale_prob", "joint_flip_prob", "set_flip_prob"):
        _require(0 <= getattr(aug, name) <= 1, f"augment.{name}", "must be a probability in [0, 1]")
    _require(0 <= aug.brightness < 1, "augment.brightness", "must be in [0, 1)")


def _validate_synthetic(syn: SyntheticConfig) -> None:
    low, high = syn.object_size
    _require(0 < low <= high <= 1, "synthetic.object_size", "must be [low, high] with 0 < low <= high <= 1")
    _require(syn.max_aspect >= 1, "synthetic.max_aspect", "must be >= 1")
    for name in ("shift", "scale_sigma", "aspect_sigma", "max_rotation", "max_blur_sigma"):
        _require(getattr(syn, name) >= 0, f"synthetic.{name}", "must be >= 0")
    _require(0 <= syn.color_jitter < 1, "synthetic.color_jitter", "must be in [0, 1)")
    _require(0 <= syn.max_occlusion <= 1, "synthetic.max_occlusion", "must be in [0, 1]")
    _require(syn.background_shift >= 0, "synthetic.background_shift", "must be >= 0")
    _require(syn.max_distractors >= 0, "synthetic.max_distractors", "must be >= 0")
    for name in ("blur_prob", "occlusion_prob", "paste_prob"):
        _require(0 <= getattr(syn, name) <= 1, f"synthetic.{name}", "must be a probability in [0, 1]")


def _validate_optim(opt: OptimConfig) -> None:
    _require(opt.epochs >= 1, "optim.epochs", "must be >= 1")
    _require(opt.lr_drop_epoch >= 1, "optim.lr_drop_epoch", "must be >= 1")
    _require(opt.batch_size >= 1, "optim.batch_size", "must be >= 1")
    _require(opt.lr > 0 and math.isfinite(opt.lr), "optim.lr", "must be > 0")
    _require(opt.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    _require(opt.encoder_multiplier >= 0, "optim.encoder_multiplier", "must be >= 0")
    _require(0 < opt.lr_gamma <= 1, "optim.lr_gamma", "must be in (0, 1]")
    _require(opt.grad_clip > 0, "optim.grad_clip", "must be > 0")


def _validate_loss(loss: LossConfig) -> None:
    for name in ("giou_weight", "l1_weight", "focal_weight"):
        _require(getattr(loss, name) >= 0, f"loss.{name}", "must be >= 0")
    _require(loss.box_loss_at in BOX_LOSS_LOCATIONS, "loss.box_loss_at",
             f"must be one of {', '.join(BOX_LOSS_LOCATIONS)}")


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Turn parsed YAML into the annotated type `tp`, rejecting unknown keys and wrong types."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, key)
    if origin in (types.UnionType, typing.Union):  # `X | None`
        return None if value is None else _convert(next(a for a in args if a is not type(None)), value, key)
    if origin is tuple:
        return _convert_tuple(args, value, key)
    return _convert_scalar(tp, value, key)


def _convert_dataclass(tp: type, value: Any, key: str) -> Any:
    if not isinstance(value, dict):
        raise _ConfigError(key, f"expected a mapping, got {type(value).__name__}")
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp)}
    unknown = sorted(str(k) for k in value if k not in fields)
    if unknown:
        raise _ConfigError(_join(key, unknown[0]), f"unknown key (allowed: {', '.join(fields)})")
    missing = [n for n, f in fields.items() if n not in value
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise _ConfigError(_join(key, missing[0]), "required key is missing")
    return tp(**{name: _convert(hints[name], v, _join(key, name)) for name, v in value.items()})


def _convert_tuple(args: tuple, value: Any, key: str) -> tuple:
    if not isinstance(value, list):
        raise _ConfigError(key, f"expected a list, got {type(value).__name__}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise _ConfigError(key, f"expected a list of {len(args)} values, got {len(value)}")
    return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def _convert_scalar(tp: type, value: Any, key: str) -> Any:
    if tp is float:
        if isinstance(value, str):  # PyYAML reads `4e-4` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif tp is bool and isinstance(value, bool):
        return value
    elif tp is str and isinstance(value, str):
        return value
    elif tp is Path and isinstance(value, str) and value:
        return Path(value)
    raise _ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")


def _type_name(tp: type) -> str:
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string", Path: "a path"}[tp]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
