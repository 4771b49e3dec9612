"""Nothing half-written: every writing command, killed (SIGKILL) while it writes, leaves its `--out`
either absent or exactly the complete previous output; a full disk (a file-size limit) gives one
clear error line and leaves nothing behind.

Each command runs in a child process on tiny data. The child is killed at a chosen moment:
- "rename": just before the finished output is renamed (or swapped) into place, the last moment at
  which a half-written output could become visible;
- "renamed": just after it, when `--out` must already be the complete new output;
- "temp": as soon as its temporary path appears beside `--out` (polled from outside);
- "random": after a random delay (slow tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# The child: mmctr's CLI, with the renames that publish an output patched to SIGKILL the process
# just before (or just after) the n-th one whose target is --out.
CHILD = r"""
import os, signal, sys
out = os.path.abspath(os.environ["KILL_OUT"])
mode, nth = os.environ.get("KILL_MODE", ""), int(os.environ.get("KILL_NTH", "1"))
seen = 0

def hits(dst):
    global seen
    if os.path.abspath(os.fspath(dst)) != out:
        return False
    seen += 1
    return seen == nth

def wrap(real):
    def patched(src, dst, *a, **k):
        hit = hits(dst)
        if hit and mode == "rename":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(src, dst, *a, **k)
        if hit and mode == "renamed":
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return patched

if mode in ("rename", "renamed"):
    import mmctr.outputs
    os.replace = wrap(os.replace)
    os.rename = wrap(os.rename)
    mmctr.outputs._exchange = wrap(mmctr.outputs._exchange)
from mmctr.cli import main
sys.exit(main(sys.argv[1:]))
"""

BENCH_ARGS = ["--models", "lr", "--peers", "--epochs", "1", "--batch-size", "256", "--warmup-steps", "1",
              "--timed-steps", "2", "--candidates", "10", "--requests", "5", "--warmup-requests", "2",
              "--eval-batch-size", "512", "--matmul-n", "128", "--max-train-rows", "1024"]  # fmt: skip


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return {**env, **extra}


def start(args: list[str], out: Path, mode: str = "", nth: int = 1, log: Path | None = None, **popen):
    log = log or out.parent / f"log-{out.name}-{time.monotonic_ns()}.txt"
    env = child_env(KILL_OUT=str(out), KILL_MODE=mode, KILL_NTH=str(nth))
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, *args], stdout=f, stderr=subprocess.STDOUT, env=env, **popen
        ), log


def fingerprint(path: Path) -> dict[str, str] | None:
    """sha256 of a file, or of every file under a directory (by relative path); None when absent."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def visible_beside(out: Path) -> set[str]:
    """Names beside --out that a user would take for an output: everything not hidden (temporary
    paths are `.NAME.tmp-PID` / `.NAME.*.tmp`), other than logs and inputs of the test and the resume
    state of train and bench (`NAME.partial/`, named so, and never recognised as a finished output)."""
    from mmctr.outputs import RUN_DIR

    names = set()
    for p in out.parent.iterdir():
        if p.name.startswith((".", "log-", "in-")):
            continue
        if p.name == f"{out.name}.partial":
            assert not RUN_DIR.recognise(p)
            continue
        if p.name == out.with_suffix(".json").name and out.suffix == ".parquet":
            continue  # embed's report beside its parquet, written after it
        names.add(p.name)
    return names


@dataclass
class Case:
    name: str
    args: list[str]  # with OUT where --out goes
    out_name: str
    previous: Path | None = None  # an earlier complete output to be replaced (with --overwrite)

    def argv(self, out: Path) -> list[str]:
        args = [str(out) if a == "OUT" else a for a in self.args]
        return [*args, "--overwrite"] if self.previous is not None else args


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> dict[str, Path]:
    """Inputs and earlier outputs of every command, made once."""
    import numpy as np

    from mmctr.report import write_report
    from mmctr.submission import write_submission

    base = tmp_path_factory.mktemp("kill")
    w = {"data": tiny_data, "base": base}
    run = base / "in-run"
    p, log = start(["train", "--data", str(tiny_data), "--model", "lr", "--epochs", "1", "--batch-size", "1024",
                    "--no-progress", "--out", str(run)], run)  # fmt: skip
    assert p.wait(timeout=300) == 0, log.read_text()
    w["run"] = run
    prev = base / "previous"
    prev.mkdir()
    shutil.copytree(tiny_data, prev / "synth")
    shutil.copy(tiny_data / "MicroLens_1M_x1" / "item_info.parquet", prev / "item_info.parquet")
    shutil.copytree(run, prev / "run")
    write_submission(np.linspace(0, 1, 1000), prev / "submission.zip")
    write_report([run], prev / "report.html")
    (prev / "bench").mkdir()
    (prev / "bench" / "bench.json").write_text("[]")
    (prev / "bench" / "bench.md").write_text("an earlier bench\n")
    w["prev"] = prev
    return w


def cases(w: dict[str, Path]) -> dict[str, Case]:
    data, run, prev = str(w["data"]), str(w["run"]), w["prev"]
    return {
        "synth": Case("synth", ["synth", "--scale", "tiny", "--seed", "3", "--no-images", "--out", "OUT"], "data",
                      prev / "synth"),
        "embed": Case("embed", ["embed", "--data", data, "--fusion", "random", "--out", "OUT"], "item_info.parquet",
                      prev / "item_info.parquet"),
        "train": Case("train", ["train", "--data", data, "--model", "lr", "--epochs", "1", "--batch-size", "1024",
                                "--no-progress", "--out", "OUT"], "run", prev / "run"),
        "predict": Case("predict", ["predict", "--run", run, "--data", data, "--out", "OUT"], "submission.zip",
                        prev / "submission.zip"),
        "report": Case("report", ["report", run, "--out", "OUT"], "report.html", prev / "report.html"),
        "bench": Case("bench", ["bench", "--data", data, *BENCH_ARGS, "--out", "OUT"], "bench", prev / "bench"),
    }  # fmt: skip


def place(case: Case, where: Path, with_previous: bool = True) -> tuple[Path, dict | None]:
    """A fresh folder holding the previous output (or nothing) at --out; the out path and its hashes."""
    where.mkdir(parents=True)
    out = where / case.out_name
    if with_previous and case.previous is not None:
        (shutil.copytree if case.previous.is_dir() else shutil.copy)(case.previous, out)
    else:
        case = Case(case.name, case.args, case.out_name, None)
    return out, fingerprint(out)


def killed_leaves_previous(
    case: Case, where: Path, mode: str, nth: int = 1, with_previous: bool = True
) -> None:
    out, before = place(case, where, with_previous)
    argv = case.argv(out) if before is not None else Case(case.name, case.args, case.out_name).argv(out)
    p, log = start(argv, out, mode, nth)
    rc = p.wait(timeout=300)
    assert rc == -signal.SIGKILL, (
        f"{case.name}: the child was not killed at {mode} #{nth} (rc {rc}):\n{log.read_text()}"
    )
    after = fingerprint(out)
    if mode == "renamed":  # the new output is in place, whole (it may equal the old one byte for byte)
        assert after is not None and (before is None or after.keys() >= before.keys()), case.name
    else:
        assert after == before, f"{case.name}: killed at {mode}, --out changed or is half-written"
    assert visible_beside(out) == ({out.name} if after is not None else set())


KILL_FAST = ["synth", "embed", "train", "predict", "report"]


@pytest.mark.parametrize("name", KILL_FAST)
def test_killed_before_the_rename_leaves_the_previous_output(world: dict, tmp_path: Path, name: str) -> None:
    killed_leaves_previous(cases(world)[name], tmp_path / "w", "rename")


def test_killed_bench_leaves_the_previous_output(world: dict, tmp_path: Path) -> None:
    """bench creates its working directory (`NAME.partial/`, for `--resume`) first and measures for a
    while: killed soon after it appears, --out is untouched."""
    case = cases(world)["bench"]
    out, before = place(case, tmp_path / "w")
    p, log = start(case.argv(out), out)
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline:
        if any(
            x.name.startswith(f".{out.name}.") or x.name == f"{out.name}.partial"
            for x in out.parent.iterdir()
        ):
            time.sleep(random.Random(0).uniform(0.2, 1.0))  # somewhere inside the measurement
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    rc = p.wait(timeout=60)
    assert rc == -signal.SIGKILL, log.read_text()
    assert fingerprint(out) == before and visible_beside(out) == {out.name}


@pytest.mark.slow
@pytest.mark.parametrize("name", [*KILL_FAST, "bench"])
@pytest.mark.parametrize("mode", ["rename", "renamed"])
@pytest.mark.parametrize("with_previous", [True, False])
def test_killed_at_every_publishing_rename(
    world: dict, tmp_path: Path, name: str, mode: str, with_previous: bool
) -> None:
    if mode == "rename" and with_previous and name in KILL_FAST:
        pytest.skip("the default suite runs this one")
    killed_leaves_previous(cases(world)[name], tmp_path / "w", mode, with_previous=with_previous)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*KILL_FAST, "bench"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_at_a_random_moment(world: dict, tmp_path: Path, name: str, seed: int) -> None:
    """Killed after a random delay: --out is the previous output, or (if the command finished
    first) the complete new one."""
    case = cases(world)[name]
    out, before = place(case, tmp_path / "w")
    p, log = start(case.argv(out), out)
    try:
        p.wait(timeout=random.Random(seed).uniform(1.0, 12.0))
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
    rc = p.wait(timeout=300)
    after = fingerprint(out)
    if rc == 0:
        assert after is not None and after != before
    else:
        assert rc == -signal.SIGKILL, log.read_text()
        assert after == before
    assert visible_beside(out) == {out.name}


# ----------------------------------------------------------------------------------------------
# Track 1's persistent index (slow: building it loads a text encoder)


@pytest.fixture(scope="module")
def index_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from mmctr.retrieval.data.synth import generate

    base = tmp_path_factory.mktemp("kill_index")
    data = base / "in-data"
    generate(data, scale="tiny", seed=0, progress=False)
    cache = base / "in-cache"
    idx = base / "previous-index"
    args = [
        "retrieval",
        "index",
        "--data",
        str(data),
        "--text-only",
        "--cache-dir",
        str(cache),
        "--no-progress",
    ]
    p, log = start([*args, "--out", str(idx)], idx)
    assert p.wait(timeout=600) == 0, log.read_text()
    return {"data": data, "cache": cache, "previous": idx, "args": args}  # type: ignore[dict-item]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rename", "renamed"])
def test_killed_retrieval_index(index_world: dict, tmp_path: Path, mode: str) -> None:
    case = Case("index", [*index_world["args"], "--out", "OUT"], "index", index_world["previous"])
    killed_leaves_previous(case, tmp_path / "w", mode)


@pytest.mark.slow
def test_killed_retrieval_index_update_in_place(index_world: dict, tmp_path: Path) -> None:
    """`--index IDX --delete DOC` rewrites the index: killed before its rename, IDX is unchanged."""
    idx = tmp_path / "w" / "index"
    idx.parent.mkdir()
    shutil.copytree(index_world["previous"], idx)
    before = fingerprint(idx)
    doc = json.loads((idx / "items.jsonl").read_text().splitlines()[0])["doc"]
    args = [
        "retrieval",
        "index",
        "--index",
        str(idx),
        "--delete",
        doc,
        "--cache-dir",
        str(index_world["cache"]),
    ]
    p, log = start(args, idx, "rename")
    assert p.wait(timeout=300) == -signal.SIGKILL, log.read_text()
    assert fingerprint(idx) == before and visible_beside(idx) == {"index"}


# ----------------------------------------------------------------------------------------------
# A full disk: writes fail with EFBIG under a file-size limit


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def full_disk(case: Case, where: Path, limit: int) -> None:
    out, before = place(case, where, with_previous=False)
    p, log = start(case.argv(out), out, preexec_fn=_limit_file_size(limit))
    rc = p.wait(timeout=300)
    text = log.read_text(errors="replace")
    assert rc == 2, f"{case.name}: rc {rc}\n{text}"
    assert "Traceback" not in text, text
    errors = [ln for ln in text.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "no space left to write" in errors[0], text
    assert before is None and not out.exists()
    assert [x.name for x in out.parent.iterdir() if not x.name.startswith("log-")] == [], "left behind"


FULL_FAST = {"synth": 60_000, "predict": 2_000}
FULL_SLOW = {"embed": 60_000, "train": 60_000, "bench": 20_000, "report": 20_000}


@pytest.mark.parametrize("name", list(FULL_FAST))
def test_full_disk_gives_one_clear_line_and_leaves_nothing(world: dict, tmp_path: Path, name: str) -> None:
    full_disk(cases(world)[name], tmp_path / "w", FULL_FAST[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FULL_SLOW))
def test_full_disk_slow(world: dict, tmp_path: Path, name: str) -> None:
    full_disk(cases(world)[name], tmp_path / "w", FULL_SLOW[name])
