"""Training loop: AdamW with the official parameter groups, StepLR, gradient clipping, per-epoch resumable
checkpoints, CSV log; single process or DDP under `torchrun` (spec §11).

Training from random weights starts with a frozen-BN calibration (our addition): the official model
always starts from an ImageNet-trained backbone (spec §11); with identity frozen-BN statistics a random
backbone emits no spikes, so nothing trains. Each frozen BN gets the per-channel mean and variance of
its input on a few training pairs, in forward order, so every spiking layer sees unit-scale input.
With `backbone_bn: train` the backbone BN then trains as regular BN (batch statistics, trainable affine):
frozen statistics drift away from a backbone trained from scratch and saturated its residual stream.
Checkpoints always hold the frozen form, so their keys and inference are the official ones.

Parameters that never receive a gradient (spec §15) are found by one dry forward/backward and frozen
(`requires_grad=False`): they stay in the checkpoint for key compatibility but are not optimised, so
DDP runs with `find_unused_parameters=False` (defect 8).
"""
from __future__ import annotations

import copy
import csv
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from spiketrack.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from spiketrack.errors import UserError
from spiketrack.models import build_model
from spiketrack.models.head import decode_boxes
from spiketrack.models.norm import BatchNormAnyRank, FrozenBatchNorm, freeze_thawed_bn, thaw_frozen_bn
from spiketrack.utils.atomic import write_text_atomic

from .config import LossConfig, OptimConfig, TrainConfig, config_to_dict
from .data import PairDataset, build_dataset
from .losses import LossTerms, generalized_iou, tracking_loss
from .targets import cxcywh_to_xyxy, xywh_to_xyxy

log = logging.getLogger(__name__)

HIGH_LR_KEYS = ("mrm", "decay", "pos_embed")  # trained at the full LR; the rest at LR x encoder_multiplier
LAST_CHECKPOINT = "last.pt"  # resumable: weights + optimizer, scheduler, RNG, epoch, step
FINAL_CHECKPOINT = "final.pt"  # weights only, written when the last epoch ends
LOG_FILE = "train_log.csv"
LOG_FIELDS = ("epoch", "step", "loss", "giou", "l1", "focal", "iou", "lr", "lr_encoder", "seconds")
VAL_LOG_FILE = "val_log.csv"
VAL_FIELDS = ("epoch", "step", "val_iou", "centre_iou", "shuffled_iou")
VAL_EPOCH = 2**31 - 1  # the held-out pairs are those of an epoch no run reaches
CENTRE_BOX = (0.375, 0.375, 0.25, 0.25)  # the target's box in a search crop without motion (crop factor 4)


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its rank among `world_size` processes and its device."""

    rank: int
    world_size: int
    device: torch.device
    owns_process_group: bool  # True if this run initialised torch.distributed (and must tear it down)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints and logs."""
        return self.rank == 0


@dataclass(frozen=True)
class TrainResult:
    """The final checkpoint and the trained (unwrapped) model of this process."""

    checkpoint: Path
    model: nn.Module


def train(config: TrainConfig, resume: Path | None = None) -> Path:
    """Run (or continue from `resume`) the training `config` describes; returns the final checkpoint."""
    return fit(config, resume).checkpoint


def fit(config: TrainConfig, resume: Path | None = None) -> TrainResult:
    """`train`, also returning this process's model (used by tests to compare DDP ranks)."""
    runtime = setup_runtime(config.device)
    try:
        return _fit(config, resume, runtime)
    finally:
        if runtime.owns_process_group:
            dist.destroy_process_group()


def setup_runtime(device: str) -> Runtime:
    """Rank, world size and device from the `torchrun` environment (RANK, WORLD_SIZE, LOCAL_RANK);
    initialises torch.distributed (nccl on GPU, gloo on CPU) when more than one process runs."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda requested but no CUDA device is available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    target = torch.device("cuda", local_rank % torch.cuda.device_count()) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    owns = world_size > 1 and not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return Runtime(rank, world_size, target, owns)


def high_lr(name: str, num_templates: int) -> bool:
    """Official grouping: mrm/decay/pos_embed at full LR, plus the head (`decoder`) for T = 1 models."""
    return any(key in name for key in HIGH_LR_KEYS) or (num_templates == 1 and "decoder" in name)


def unused_parameters(model: nn.Module, batch_size: int = 2) -> list[str]:
    """Names of parameters whose grad stays None after a forward/backward on random crops (run on a copy,
    so the model's BN statistics are untouched)."""
    probe = copy.deepcopy(model).train()
    cfg = model.cfg
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    shape = (batch_size, 3, cfg.search_size, cfg.search_size)
    templates = torch.randn((cfg.num_templates, *shape), generator=gen).to(device)
    search = torch.randn((1, *shape), generator=gen).to(device)
    outputs = probe(templates, search)
    sum(v.float().mean() for v in outputs.values()).backward()
    return [name for name, p in probe.named_parameters() if p.requires_grad and p.grad is None]


def calibrate_frozen_bn(model: nn.Module, templates: torch.Tensor, search: torch.Tensor) -> int:
    """Set every frozen BN's running mean/var to its input's per-channel statistics on one forward of
    (templates (T,B,3,S,S), search (1,B,3,S,S)); each layer is calibrated on its first call, after the
    layers before it. Returns the number of layers calibrated."""
    done: set[nn.Module] = set()

    def calibrate(module: FrozenBatchNorm, args: tuple[torch.Tensor, ...]) -> None:
        if module not in done:
            x = args[0].detach()
            dims = [d for d in range(x.dim()) if d != 1]
            module.running_mean.copy_(x.mean(dims))
            module.running_var.copy_(x.var(dims, unbiased=False))
            done.add(module)

    hooks = [m.register_forward_pre_hook(calibrate) for m in model.modules() if isinstance(m, FrozenBatchNorm)]
    try:
        with torch.no_grad():
            model(templates, search)
    finally:
        for hook in hooks:
            hook.remove()
    return len(done)


def freeze_unused(model: nn.Module) -> list[str]:
    """Set requires_grad=False on the parameters that get no gradient; returns their names."""
    names = unused_parameters(model)
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(False)
    return names


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters in two groups: full LR and LR x encoder_multiplier."""
    num_templates = model.cfg.num_templates
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if high_lr(n, num_templates)], "lr": cfg.lr},
        {"params": [p for n, p in trainable if not high_lr(n, num_templates)], "lr": cfg.lr * cfg.encoder_multiplier},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], loss_cfg: LossConfig,
               grad_clip: float) -> LossTerms:
    """One optimisation step on a batch (templates (B,T,3,S,S), search (B,3,S,S), GT (B,4)) already
    on the model's device."""
    templates, search, gt = batch
    outputs = model(templates.transpose(0, 1), search.unsqueeze(0))
    terms = tracking_loss(outputs, gt, loss_cfg)
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return terms


def validation_pairs(dataset: PairDataset, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` held-out pairs (drawn from an epoch training never reaches): templates (T,N,3,S,S),
    search (1,N,3,S,S), GT (N,4)."""
    templates, search, gt = (torch.stack(p) for p in zip(*(dataset.pair(VAL_EPOCH, i) for i in range(count))))
    return templates.transpose(0, 1), search[None], gt


def localisation_scores(model: nn.Module, pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Mean IoU on held-out pairs of the box the tracker would take (score-map peak, eval mode), of a fixed
    centre box, and of the model's box with the templates shuffled across pairs (equal to val_iou when
    the template is ignored)."""
    templates, search, gt = pairs
    device = next(model.parameters()).device
    target = xywh_to_xyxy(gt.to(device))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ious = {}
            for name, z in (("val_iou", templates), ("shuffled_iou", templates.roll(1, dims=1))):
                out = model(z.to(device), search.to(device))
                boxes, _ = decode_boxes(out["score_map"], out["size_map"], out["offset_map"])
                ious[name] = float(generalized_iou(cxcywh_to_xyxy(boxes), target)[1].mean())
    finally:
        model.train(was_training)
    centre = xywh_to_xyxy(torch.tensor(CENTRE_BOX, device=device).expand_as(target))
    ious["centre_iou"] = float(generalized_iou(centre, target)[1].mean())
    return ious


def load_init_weights(model: nn.Module, path: Path) -> list[str]:
    """Copy every checkpoint tensor whose key and shape match (strict=False, like the official
    MODEL.PRE_TRAINED was meant to); returns the model keys that keep their initialisation."""
    own = model.state_dict()
    matching = {k: v for k, v in load_checkpoint(path).state_dict.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise UserError("init_checkpoint: no tensor matches the model (wrong variant?)", path)
    return model.load_state_dict(matching, strict=False).missing_keys


def _load_resume(path: Path, variant: str) -> Checkpoint:
    """The resume checkpoint, checked to be a training checkpoint of `variant`."""
    ckpt = load_checkpoint(path)
    if ckpt.variant != variant:
        raise UserError(f"checkpoint is for variant {ckpt.variant!r}, the config trains {variant!r}", path)
    if not ckpt.extra or "optimizer" not in ckpt.extra:
        raise UserError("not a resumable training checkpoint (no optimizer state); "
                        "use init_checkpoint to start from its weights", path)
    return ckpt


def _rng_state() -> dict:
    """Torch RNG states (CPU and every CUDA device), checkpoint-safe."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    """Restore what `_rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _prepare_log(path: Path, fields: tuple[str, ...], last_step: int) -> None:
    """Start a CSV log, or keep the rows up to `last_step` of an existing one (resume)."""
    rows = []
    if path.is_file() and last_step > 0:
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= last_step]
    lines = [",".join(fields)] + [",".join(r.get(k, "") for k in fields) for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _worker_init(_: int) -> None:
    """One OpenCV/torch thread per loader worker (the workers already run in parallel)."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


class _Meter:
    """Running means of the loss terms between two log rows."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float]) -> None:
        """Accumulate one step's values."""
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def pop(self) -> dict[str, float]:
        """Means since the last pop; starts a new interval."""
        means = {k: v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


@dataclass(frozen=True)
class _Progress:
    """How far a run got: completed epochs, optimisation steps, training seconds."""

    epoch: int = 0
    step: int = 0
    elapsed: float = 0.0


def _configure_process(config: TrainConfig, runtime: Runtime) -> None:
    """Thread counts and deterministic cuDNN for this process."""
    if config.threads > 0:
        torch.set_num_threads(config.threads)
        cv2.setNumThreads(config.threads)
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def _initial_model(config: TrainConfig, ckpt: Checkpoint | None, dataset: PairDataset,
                   device: torch.device) -> nn.Module:
    """The model to train, in train mode: resumed weights, init checkpoint weights, or the seeded random
    init with its frozen BN calibrated on the first `calibrate_samples` pairs."""
    torch.manual_seed(config.seed)
    model = build_model(config.variant).to(device).train()
    if ckpt is not None:
        model.load_state_dict(ckpt.state_dict)
    elif config.init_checkpoint is not None:
        kept = load_init_weights(model, config.init_checkpoint)
        log.info("init weights from %s (%d keys keep their initialisation)", config.init_checkpoint, len(kept))
    elif config.calibrate_samples > 0:
        templates, search, _ = (torch.stack(p) for p in zip(*(dataset[i] for i in range(config.calibrate_samples))))
        count = calibrate_frozen_bn(model, templates.transpose(0, 1).to(device), search[None].to(device))
        log.info("calibrated %d frozen BN layers on %d pairs", count, config.calibrate_samples)
    if ckpt is None and config.init_checkpoint is None and config.score_prior is not None:
        with torch.no_grad():
            model.decoder.conv5_ctr.bias.fill_(math.log(config.score_prior / (1 - config.score_prior)))
    if config.backbone_bn == "train":
        log.info("%d backbone BN layers train as regular BN", thaw_frozen_bn(model))
    return model


def inference_form(model: nn.Module) -> nn.Module:
    """The model as checkpoints store it: a copy with trained backbone BN frozen again (official keys),
    or the model itself when nothing was thawed."""
    if not any(isinstance(m, BatchNormAnyRank) for m in model.modules()):
        return model
    frozen = copy.deepcopy(model)
    freeze_thawed_bn(frozen)
    return frozen


def _restore(ckpt: Checkpoint, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.StepLR) -> _Progress:
    """Optimizer, scheduler and RNG states of a resume checkpoint; returns where it stopped."""
    optimizer.load_state_dict(ckpt.extra["optimizer"])
    scheduler.load_state_dict(ckpt.extra["scheduler"])
    _set_rng_state(ckpt.extra["rng"])
    return _Progress(ckpt.extra["epoch"], ckpt.extra["step"], ckpt.extra["elapsed"])


def _make_loader(dataset: PairDataset, config: TrainConfig,
                 runtime: Runtime) -> tuple[DataLoader, DistributedSampler | None]:
    """Batches of this process's share of each epoch (DistributedSampler under DDP); full batches only."""
    sampler = (DistributedSampler(dataset, runtime.world_size, runtime.rank, shuffle=False, drop_last=True)
               if runtime.world_size > 1 else None)
    loader = DataLoader(dataset, config.optim.batch_size, sampler=sampler, num_workers=config.data.num_workers,
                        drop_last=True, pin_memory=runtime.device.type == "cuda", worker_init_fn=_worker_init)
    if len(loader) == 0:
        raise UserError(f"data.samples_per_epoch ({config.data.samples_per_epoch}) is smaller than "
                        f"optim.batch_size x processes ({config.optim.batch_size} x {runtime.world_size})")
    return loader, sampler


def _train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, config: TrainConfig,
                 epoch: int, step: int, log_path: Path | None, started: float) -> int:
    """One pass over the loader (epoch is 0-based); appends averaged CSV rows when `log_path` is given
    (rank 0). Returns the global step count."""
    device = next(net.parameters()).device
    meter = _Meter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.optim.epochs}", leave=False,
               disable=log_path is None or not config.log.progress)
    for i, batch in enumerate(bar):
        batch = tuple(t.to(device, non_blocking=True) for t in batch)
        values = train_step(net, optimizer, batch, config.loss, config.optim.grad_clip).as_floats()
        step += 1
        meter.add(values)
        bar.set_postfix(loss=f"{values['total']:.3f}", iou=f"{values['iou']:.2f}")
        if log_path is not None and (step % config.log.every == 0 or i == len(loader) - 1):
            _append_log(log_path, epoch + 1, step, meter.pop(), optimizer, time.monotonic() - started)
    return step


def _fit(config: TrainConfig, resume: Path | None, runtime: Runtime) -> TrainResult:
    """The training run proper (process group already set up)."""
    _configure_process(config, runtime)
    ckpt = _load_resume(resume, config.variant) if resume is not None else None
    dataset = build_dataset(config)
    model = _initial_model(config, ckpt, dataset, runtime.device)
    log.info("%d parameter tensors receive no gradient and are frozen", len(freeze_unused(model)))
    optimizer = build_optimizer(model, config.optim)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.optim.lr_drop_epoch, config.optim.lr_gamma)
    progress = _restore(ckpt, optimizer, scheduler) if ckpt is not None else _Progress()
    if ckpt is not None:
        log.info("resuming %s after epoch %d (step %d)", resume, progress.epoch, progress.step)
    loader, sampler = _make_loader(dataset, config, runtime)
    net = (DistributedDataParallel(model, device_ids=[runtime.device] if runtime.device.type == "cuda" else None,
                                   find_unused_parameters=False) if runtime.world_size > 1 else model)
    out_dir = config.output_dir
    log_path = out_dir / LOG_FILE if runtime.is_main else None
    if log_path is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _prepare_log(log_path, LOG_FIELDS, progress.step)
    val_path = out_dir / VAL_LOG_FILE if runtime.is_main and config.log.val_pairs > 0 else None
    val_pairs = validation_pairs(dataset, config.log.val_pairs) if val_path is not None else None
    if val_path is not None:
        _prepare_log(val_path, VAL_FIELDS, progress.step)
    meta = {"train_config": config_to_dict(config)}
    started = time.monotonic() - progress.elapsed
    step = progress.step
    for epoch in range(progress.epoch, config.optim.epochs):
        dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        step = _train_epoch(net, optimizer, loader, config, epoch, step, log_path, started)
        scheduler.step()
        if runtime.is_main:
            extra = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                     "epoch": epoch + 1, "step": step, "elapsed": time.monotonic() - started}
            save_checkpoint(out_dir / LAST_CHECKPOINT, inference_form(model), {**meta, "epoch": epoch + 1, "step": step},
                            extra)
            if val_pairs is not None:
                _append_row(val_path, VAL_FIELDS, {"epoch": epoch + 1, "step": step,
                                                   **localisation_scores(model, val_pairs)})
    if runtime.world_size > 1:  # BN running stats drift per rank after the last step; keep rank 0's
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    final = out_dir / FINAL_CHECKPOINT
    if runtime.is_main:
        save_checkpoint(final, inference_form(model), {**meta, "epoch": config.optim.epochs, "step": step})
    if runtime.world_size > 1:
        dist.barrier()
    return TrainResult(final, model)


def _append_log(path: Path, epoch: int, step: int, means: dict[str, float], optimizer: torch.optim.Optimizer,
                seconds: float) -> None:
    """One CSV row: mean loss terms since the previous row, both group LRs, elapsed seconds."""
    row = {"epoch": epoch, "step": step, "loss": means["total"], "giou": means["giou"], "l1": means["l1"],
           "focal": means["focal"], "iou": means["iou"], "lr": optimizer.param_groups[0]["lr"],
           "lr_encoder": optimizer.param_groups[1]["lr"], "seconds": round(seconds, 1)}
    _append_row(path, LOG_FIELDS, row)


def _append_row(path: Path, fields: tuple[str, ...], row: dict) -> None:
    """Append `row` (floats to 6 significant digits) in `fields` order to a CSV file."""
    with path.open("a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerow(
            [f"{row[k]:.6g}" if isinstance(row[k], float) else row[k] for k in fields])
