"""Shared test fixtures: paths to ../shared, thread limits."""
from __future__ import annotations

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
