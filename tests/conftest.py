from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic data set in the real MMCTR layout (seconds to make), shared read-only."""
    from mmctr.data.synth import generate

    root = tmp_path_factory.mktemp("tiny") / "data"
    generate(root, scale="tiny", seed=0)
    return root


@pytest.fixture
def tiny_copy(tiny_data: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny data set, for tests that corrupt files."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_data, dst, ignore=shutil.ignore_patterns("item_images"))
    return dst
