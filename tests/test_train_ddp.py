"""DDP training on CPU: two gloo processes (as torchrun would start them) end with identical weights,
and only rank 0 writes checkpoints and the log."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from spiketrack.train.config import DataConfig, LogConfig, OptimConfig, SourceConfig, TrainConfig
from spiketrack.train.trainer import fit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rank(rank: int, world_size: int, port: int, config: TrainConfig, out: Path) -> None:
    """One process of the job: the torchrun environment, 1 thread, train, save this rank's weights."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = fit(config)
    torch.save(result.model.state_dict(), out / f"rank{rank}.pt")


def test_two_ranks_end_with_identical_weights(tmp_path):
    run_dir = tmp_path / "run"
    config = TrainConfig(
        variant="tiny", output_dir=run_dir, device="cpu", threads=1, calibrate_samples=2,
        data=DataConfig(sources=(SourceConfig("synthetic"),), samples_per_epoch=8),  # 2 steps per rank
        optim=OptimConfig(epochs=1, lr_drop_epoch=1, batch_size=2, lr=1e-3),
        log=LogConfig(every=1, progress=False))
    mp.spawn(run_rank, args=(2, free_port(), config, tmp_path), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []
    assert sorted(p.name for p in run_dir.iterdir()) == ["final.pt", "last.pt", "train_log.csv"]
    assert len((run_dir / "train_log.csv").read_text().splitlines()) == 1 + 2  # header + 2 steps
