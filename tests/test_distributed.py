"""Data-parallel training under torchrun (mmctr.training.distributed): 2 processes, gloo, on this
machine's loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmctr.config import resolve_run_config
from mmctr.data.reader import load_dataset
from mmctr.errors import ConfigError
from mmctr.models import MODELS
from mmctr.training.distributed import World, block, local_batch_size, shard_rows
from mmctr.training.loop import train

HERE = Path(__file__).parent
# The tolerance on valid AUC between 2 processes and 1: the two runs see the same rows in another
# order (each rank shuffles its own shard) with other dropout masks, and tiny's valid split has
# 1,000 rows; a 1-process run with another seed moves the DIN's valid AUC by up to ~0.03 here.
AUC_TOLERANCE = 0.05


def test_shards_and_blocks_cover_the_rows():
    worlds = [World(rank=r, size=3) for r in range(3)]
    shards = [shard_rows(10, w) for w in worlds]
    assert [s.tolist() for s in shards] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]  # equal: row 9 left out
    assert shard_rows(10, World()) is None
    assert [block(10, w) for w in worlds] == [slice(0, 4), slice(4, 8), slice(8, 10)]
    with pytest.raises(ConfigError, match="multiple of 3"):
        local_batch_size(256, worlds[0])
    assert local_batch_size(256, World(size=2)) == 128


@pytest.fixture(scope="module")
def ddp_runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(HERE / "ddp_worker.py"),
        str(tiny_data),
        str(out),
        *MODELS,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr[-4000:]
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_one_ddp_step_equals_one_process_step(ddp_runs: Path, name: str):
    gaps = json.loads((ddp_runs / "one_step_gaps.json").read_text())
    assert gaps[name] < 1e-5


@pytest.mark.parametrize("name", list(MODELS))
def test_two_processes_match_one(ddp_runs: Path, tiny_data: Path, name: str):
    run = ddp_runs / name
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "model.safetensors", "run.json", "metrics.json"}
    assert json.loads((run / "run.json").read_text())["processes"] == 2
    assert not (ddp_runs / f"{name}.partial").exists()
    two = json.loads((run / "metrics.json").read_text())
    assert two["processes"] == 2 and two["epochs_run"] == 2
    data = load_dataset(tiny_data, splits=("train", "valid"))
    cfg = resolve_run_config(name, None, {"train": {"batch_size": 256, "epochs": 2, "seed": 7, "threads": 1}})
    one = train(cfg, data, progress=False, log=lambda *_: None).metrics
    assert abs(two["valid_auc"] - one["valid_auc"]) <= AUC_TOLERANCE, (two["valid_auc"], one["valid_auc"])


def test_cli_nproc_writes_one_run(tiny_data: Path, tmp_path: Path):
    p = subprocess.run(
        [sys.executable, "-m", "mmctr", "train", "--data", str(tiny_data), "--out", "run", "--nproc", "2",
         "--batch-size", "256", "--epochs", "1", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("run written to run") == 1  # rank 0 alone reports and writes
    assert json.loads((tmp_path / "run" / "run.json").read_text())["processes"] == 2
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run"]
    bad = subprocess.run(
        [sys.executable, "-m", "mmctr", "train", "--data", str(tiny_data), "--out", "r2", "--nproc", "2",
         "--batch-size", "255", "--epochs", "1", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bad.returncode != 0 and "multiple of 2" in bad.stderr and "Traceback" not in bad.stderr


def test_embed_under_torchrun_writes_one_parquet_equal_to_one_process(tiny_data: Path, tmp_path: Path):
    import numpy as np
    import pyarrow.parquet as pq

    def embed(out: str, cache: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mmctr", "embed", "--data", str(tiny_data), "--out", out, "--fusion", "text",
             "--cache-dir", cache, "--no-progress", *extra],
            cwd=tmp_path, capture_output=True, text=True, timeout=900,
        )  # fmt: skip

    two = embed("two.parquet", "cache2", "--nproc", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("written to two.parquet") == 1
    assert "rank 0: text: 200 items" in two.stderr and "rank 1: text: 200 items" in two.stderr
    assert len(list((tmp_path / "cache2").glob("*/*.keys.npy"))) == 2  # one shard of vectors per rank
    one = embed("one.parquet", "cache1")
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = (
        np.array(pq.read_table(tmp_path / f).column("item_emb_d128").to_pylist())
        for f in ("one.parquet", "two.parquet")
    )
    # the same vectors up to batch composition (each rank encodes other batches than one process)
    assert a.shape == b.shape == (401, 128) and np.abs(a - b).max() < 1e-4
    assert json.loads((tmp_path / "two.json").read_text())["processes"] == 2


def test_retrieval_train_under_torchrun_equals_one_process(tmp_path: Path):
    """Track 1's two-tower training with 2 processes: each computes the loss of its share of every
    batch and the gradients are summed before the step, so the run is the 1-process run up to float
    summation order: the same losses to 1e-5, the same held-out scores and best epoch, one run."""
    from mmctr.retrieval.data.synth import generate

    generate(tmp_path / "data", scale="tiny", seed=3, progress=False)

    def train(out: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mmctr", "retrieval", "train", "--data", "data", "--out", out,
             "--epochs", "3", "--patience", "5", "--cache-dir", "cache", "--no-progress", *extra],
            cwd=tmp_path, capture_output=True, text=True, timeout=900,
        )  # fmt: skip

    two = train("two", "--nproc", "2")  # first, with an empty cache: rank 0 fills it, rank 1 reads it
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("wrote two") == 1  # rank 0 alone reports and writes
    one = train("one")
    assert one.returncode == 0, one.stderr[-3000:]
    m1, m2 = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("one", "two"))
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert len(m1["history"]) == len(m2["history"]) == 4
    for h1, h2 in zip(m1["history"][1:], m2["history"][1:], strict=True):
        assert abs(h1["loss"] - h2["loss"]) < 1e-5
        assert h1["held_out"] == pytest.approx(h2["held_out"], abs=1e-9)
    assert m1["best_epoch"] == m2["best_epoch"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["cache", "data", "one", "two"]
    busy = train("two", "--nproc", "2")  # an existing run is refused before any process starts
    assert busy.returncode == 2 and "two" in busy.stderr and "Traceback" not in busy.stderr
