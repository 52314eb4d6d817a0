"""Shared test fixtures: paths to ../shared, thread limits."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEQUENCES = SHARED / "data" / "sequences"
SPEC = SHARED / "spec"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def sequences_dir() -> Path:
    assert SEQUENCES.is_dir(), f"{SEQUENCES} missing: tests need ../shared beside the repo"
    return SEQUENCES


@contextlib.contextmanager
def one_torch_thread():
    """The torch reference with one thread: two threads spin-wait badly on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fails_in_one_line(run, capsys, argv: list[str], *expected: str) -> str:
    """`run(argv)` exits 2 with a one-line stderr message containing every `expected` text."""
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    for text in expected:
        assert text in err, err
    return err
