"""Checkpoints that survive SIGKILL, resuming, and the streaming reader (mmctr.training.checkpoint,
mmctr.data.stream)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from mmctr.data.reader import SPLIT_COLUMNS, load_dataset, read_split
from mmctr.data.stream import StreamedSplit
from mmctr.errors import ConfigError, DataError
from mmctr.training import checkpoint

# one thread, so that an interrupted and an uninterrupted run compute in the same order
CONFIG = "train:\n  threads: 1\n"


def mmctr(*args: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "mmctr", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(p: subprocess.Popen) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=600)
    return p.returncode, out, err


def train_args(data: Path, out: str, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", out, "--batch-size", "128", "--epochs", "2"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("ckpt")
    (work / "c.yaml").write_text(CONFIG)
    p = mmctr(*train_args(tiny_data, "full"), "--config", "c.yaml", "--no-progress", cwd=work)
    rc, out, err = finish(p)
    assert rc == 0, err
    assert not (work / "full.partial").exists()  # deleted once the run is in place
    return work / "full"


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tiny_data: Path, uninterrupted: Path, tmp_path: Path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    ckpt = tmp_path / "run.partial" / checkpoint.STATE
    p = mmctr(
        *train_args(tiny_data, "run"),
        "--config",
        "c.yaml",
        "--checkpoint-every",
        "5",
        "--no-progress",
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 300
    while not ckpt.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "training ended before its first checkpoint"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "run").exists()  # nothing that looks finished
    state = torch.load(ckpt, weights_only=True)
    assert state["loop"]["epoch"] == 1 and 0 < state["loop"]["batch_in_epoch"] < 32  # killed mid-epoch

    rc, out, err = finish(mmctr("train", "--resume", "run", "--no-progress", cwd=tmp_path))
    assert rc == 0, err
    assert "resumed at epoch 1" in out
    assert not (tmp_path / "run.partial").exists()
    got = json.loads((tmp_path / "run" / "metrics.json").read_text())
    want = json.loads((uninterrupted / "metrics.json").read_text())
    assert got["valid_auc"] == want["valid_auc"]
    assert [h["loss"] for h in got["history"]] == [h["loss"] for h in want["history"]]
    a, b = (
        load_file(str(tmp_path / "run" / "model.safetensors")),
        load_file(str(uninterrupted / "model.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_after_an_epoch_end_checkpoint(tiny_data: Path, uninterrupted: Path, tmp_path: Path):
    """Killed between epochs (the checkpoint of epoch 1's end is the latest): the same result."""
    (tmp_path / "c.yaml").write_text(CONFIG)
    p = mmctr(
        *train_args(tiny_data, "run"),
        "--config",
        "c.yaml",
        "--checkpoint-every",
        "0",
        "--no-progress",
        cwd=tmp_path,
    )
    ckpt = tmp_path / "run.partial" / checkpoint.STATE
    deadline = time.monotonic() + 300
    while not ckpt.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    if (tmp_path / "run").exists():
        pytest.skip("the run finished before it could be killed")
    assert torch.load(ckpt, weights_only=True)["loop"]["batch_in_epoch"] == 0
    rc, out, err = finish(mmctr("train", "--resume", "run", "--no-progress", cwd=tmp_path))
    assert rc == 0, err
    got = json.loads((tmp_path / "run" / "metrics.json").read_text())
    want = json.loads((uninterrupted / "metrics.json").read_text())
    assert got["valid_auc"] == want["valid_auc"]


def test_leftover_checkpoint_is_not_silently_replaced(tiny_data: Path, tmp_path: Path):
    d = checkpoint.start(tmp_path / "run", {"data": str(tiny_data), "config": {}, "world_size": 1}, False)
    rc, out, err = finish(mmctr(*train_args(tiny_data, "run"), "--no-progress", cwd=tmp_path))
    assert rc == 2 and "--resume" in err and "Traceback" not in err
    assert (d / checkpoint.SETTINGS).exists()


def test_resume_errors_are_named(tiny_data: Path, tmp_path: Path):
    rc, _, err = finish(mmctr("train", "--resume", "nothing", cwd=tmp_path))
    assert rc == 2 and "no checkpoint of an interrupted run" in err and "Traceback" not in err
    rc, _, err = finish(mmctr("train", "--resume", "nothing", "--data", str(tiny_data), cwd=tmp_path))
    assert rc == 2 and "drop --data" in err
    d = checkpoint.start(tmp_path / "run", {"data": str(tiny_data), "config": {}, "world_size": 1}, False)
    (d / checkpoint.STATE).write_bytes(b"not a checkpoint")
    rc, _, err = finish(mmctr("train", "--resume", "run", cwd=tmp_path))
    assert rc == 2 and "checkpoint.pt: cannot be loaded" in err and "Traceback" not in err


def test_bad_data_leaves_no_checkpoint_dir(tiny_copy: Path, tmp_path: Path):
    (tiny_copy / "MicroLens_1M_x1" / "valid.parquet").write_bytes(b"PAR1 truncated")
    rc, _, err = finish(mmctr(*train_args(tiny_copy, "run"), "--no-progress", cwd=tmp_path))
    assert rc == 2 and "valid.parquet" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


# ---------------------------------------------------------------------------------------------
# streaming


@pytest.fixture(scope="module")
def grouped(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny's train split rewritten in row groups of 300 rows (14 groups), with user_id = the row's
    number in the file, so that every row can be told apart."""
    import pyarrow as pa

    path = tmp_path_factory.mktemp("grouped") / "train.parquet"
    t = pq.read_table(tiny_data / "MicroLens_1M_x1" / "train.parquet")
    rows = pa.array(np.arange(t.num_rows, dtype=np.int64))
    pq.write_table(
        t.set_column(t.schema.get_field_index("user_id"), "user_id", rows), path, row_group_size=300
    )
    return path


def _rows_seen(stream: StreamedSplit, batch: int, seed: int) -> list[int]:
    """The file rows (user_id) in the order the stream gives them."""
    return [u for b in stream.batches(batch, np.random.default_rng(seed)) for u in b.user_id.tolist()]


def test_stream_gives_every_row_once_an_epoch_shuffled(grouped: Path):
    full = read_split(grouped, 401, 64)
    stream = StreamedSplit(grouped, 401, 64, buffer_rows=1000)
    assert len(stream) == len(full)
    seen = _rows_seen(stream, 128, 0)
    assert sorted(seen) == full.user_id.tolist() == list(range(len(full)))  # every row, once
    assert seen != sorted(seen)  # shuffled, not file order
    assert _rows_seen(stream, 128, 0) == seen  # the same RNG state gives the same batches (resume)
    assert _rows_seen(stream, 128, 1) != seen
    skipped = [len(b) for b in stream.batches(128, np.random.default_rng(0), skip=3)]
    assert sum(skipped) == len(full) - 3 * 128


def test_stream_shards_are_disjoint_and_equal(grouped: Path):
    shards = [_rows_seen(StreamedSplit(grouped, 401, 64, rank=r, world_size=3), 100, 0) for r in range(3)]
    assert [len(s) for s in shards] == [1200, 1200, 1200]  # the smallest share: 4 groups of 300
    assert all(len(set(s)) == len(s) for s in shards)
    assert not set(shards[0]) & set(shards[1]) and not set(shards[1]) & set(shards[2])
    assert not set(shards[0]) & set(shards[2])


def test_stream_errors(tiny_data: Path, tmp_path: Path, grouped: Path):
    one_group = tiny_data / "MicroLens_1M_x1" / "train.parquet"
    with pytest.raises(DataError, match="row group"):
        StreamedSplit(one_group, 401, 64, rank=0, world_size=2)
    with pytest.raises(ConfigError, match="stream-buffer"):
        StreamedSplit(grouped, 401, 64, buffer_rows=0)
    bad = tmp_path / "bad.parquet"
    t = pq.read_table(grouped)
    seq = t.column("item_seq").to_pylist()
    seq[3500][-1] = 10_000  # an item id beyond item_info, in row group 11
    t = t.set_column(t.schema.get_field_index("item_seq"), "item_seq", [seq])
    pq.write_table(t.select(list(SPLIT_COLUMNS)), bad, row_group_size=300)
    with pytest.raises(DataError, match="row 3500 position"):
        list(StreamedSplit(bad, 401, 64).batches(128, np.random.default_rng(0)))


def test_train_from_stream(tiny_data: Path, grouped: Path, tmp_path: Path):
    from mmctr.config import resolve_run_config
    from mmctr.training.loop import train

    data = load_dataset(tiny_data, splits=("valid",))
    cfg = resolve_run_config("din", None, {"train": {"batch_size": 128, "epochs": 1, "threads": 1}})
    result = train(cfg, data, progress=False, log=lambda *_: None, train_rows=StreamedSplit(grouped, 401, 64))
    assert result.metrics["epochs_run"] == 1 and 0 < result.metrics["valid_auc"] < 1
    pop = resolve_run_config("pop", None, {"train": {"batch_size": 128, "epochs": 1}})
    with pytest.raises(ConfigError, match="Drop --stream"):
        train(pop, data, progress=False, log=lambda *_: None, train_rows=StreamedSplit(grouped, 401, 64))


# ---------------------------------------------------------------------------------------------
# a killed bench resumes the systems not yet measured

BENCH_ARGS = ["--epochs", "1", "--batch-size", "256", "--warmup-steps", "1", "--timed-steps", "2",
              "--candidates", "10", "--requests", "5", "--warmup-requests", "2", "--matmul-n", "64",
              "--eval-batch-size", "512", "--max-train-rows", "1024", "--peers"]  # fmt: skip


def test_killed_bench_resumes_only_the_systems_not_measured(tiny_data: Path, tmp_path: Path):
    args = ["bench", "--data", str(tiny_data), "--models", "lr", "din", "--out", "b", *BENCH_ARGS]
    p = mmctr(*args, cwd=tmp_path)
    first = tmp_path / "b.partial" / "runs" / "mmctr_lr.0.json"
    deadline = time.monotonic() + 300
    while not (first.exists() and first.stat().st_size) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the child has written its record and exited
    p.send_signal(signal.SIGKILL)
    p.wait()
    if (tmp_path / "b").exists():
        pytest.skip("the bench finished before it could be killed")
    kept = json.loads(first.read_text())
    rc, out, err = finish(mmctr(*args, cwd=tmp_path))  # without --resume: refused, named
    assert rc == 2 and "--resume" in err and "Traceback" not in err
    rc, out, err = finish(mmctr(*args, "--resume", cwd=tmp_path))
    assert rc == 0, err
    assert "mmctr/lr: run 1/1 measured before the interruption; kept" in out
    records = {r["system"]: r for r in json.loads((tmp_path / "b" / "bench.json").read_text())}
    assert set(records) == {"mmctr/lr", "mmctr/din"}
    assert records["mmctr/lr"]["infer_p99_ms"] == kept["infer_p99_ms"]  # not measured again
    assert not (tmp_path / "b.partial").exists() and not (tmp_path / "b" / "resume.json").exists()


# ---------------------------------------------------------------------------------------------
# a killed `mmctr embed` keeps what its cache flushed; the rerun is complete and identical


def test_killed_embed_reruns_from_its_cache_to_the_same_file(tiny_data: Path, tmp_path: Path):
    def embed(out: str, cache: str) -> subprocess.Popen:
        return mmctr("embed", "--data", str(tiny_data), "--out", out, "--fusion", "text", "--cache-dir", cache,
                     "--no-progress", cwd=tmp_path)  # fmt: skip

    rc, _, err = finish(embed("clean.parquet", "clean_cache"))
    assert rc == 0, err
    p = embed("out.parquet", "cache")
    deadline = time.monotonic() + 300
    shards = lambda: list((tmp_path / "cache").glob("*/*.keys.npy"))  # noqa: E731
    while not shards() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    if (tmp_path / "out.parquet").exists():
        pytest.skip("embed finished before it could be killed")
    assert shards(), "killed before the cache flushed"
    rc, _, err = finish(embed("out.parquet", "cache"))
    assert rc == 0, err
    assert "400 from cache, 0 encoded" in err  # nothing encoded twice
    a, b = (pq.read_table(tmp_path / f) for f in ("clean.parquet", "out.parquet"))
    assert a.equals(b)  # complete, and the same vectors as a run never interrupted
