"""Checkpoints that survive a kill, and resuming from them.

While `mmctr train --out RUN` trains, its checkpoints live in `RUN.partial/` beside the run:

RUN.partial/resume.json     how the run was started: data root, item_info, resolved config,
                            number of processes, the data's fingerprint
RUN.partial/checkpoint.pt   the latest state: model, optimizer (its learning rate included), the
                            best model so far, early-stopping counters, history, the epoch and
                            the number of its batches done, and every RNG (python, numpy, torch)

Both are written to a temporary file, flushed to disk and renamed, so a kill at any moment leaves
the previous complete checkpoint. `mmctr train --resume RUN` reads them and continues; when the run
directory is written, `RUN.partial/` is deleted (mmctr created it). The checkpoint is loaded with
`torch.load(weights_only=True)`: no pickled code runs.

Resumed fp32 training on the same number of threads is bit-identical to a run never interrupted
(tests/test_checkpoint.py): the epoch's shuffle is redrawn from the RNG state saved at its start
and the batches already done are skipped. bf16 autocast kernels are not bit-reproducible across
processes, so a resumed bf16 run matches within noise only.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from mmctr.errors import MMCTRError
from mmctr.outputs import OutputError

STATE = "checkpoint.pt"
SETTINGS = "resume.json"


class CheckpointError(MMCTRError):
    """A checkpoint that cannot be resumed from."""


def partial_dir(out: Path) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}.partial"


def is_partial_dir(path: Path) -> bool:
    """Whether `path` is a checkpoint directory mmctr wrote (so it may replace or delete it)."""
    return (
        path.is_dir()
        and (path / SETTINGS).is_file()
        and {p.name for p in path.iterdir()}
        <= {
            SETTINGS,
            STATE,
        }
        | {p.name for p in path.iterdir() if p.name.startswith(".tmp-")}
    )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, write) -> None:
    """write(f) into a temporary file beside `path`, flush it to disk, rename it onto `path`."""
    tmp = path.parent / f".tmp-{os.getpid()}-{path.name}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def start(out: Path, settings: dict[str, Any], overwrite: bool) -> Path:
    """Create `OUT.partial/` with its resume.json for a new run. A checkpoint left by an earlier,
    interrupted run is refused unless `overwrite` (then it is replaced: mmctr wrote it)."""
    d = partial_dir(out)
    if d.exists() or d.is_symlink():
        if not is_partial_dir(d):
            raise OutputError(
                f"{d}: exists and is not a checkpoint directory written by mmctr; it is where "
                f"`--out {out}` keeps its checkpoints. Move it away or choose another --out"
            )
        if not overwrite:
            raise OutputError(
                f"{d}: holds the checkpoint of an interrupted run; continue it with "
                f"`mmctr train --resume {out}`, or pass --overwrite to start again"
            )
        shutil.rmtree(d)
    d.mkdir(parents=True)
    _write_atomic(d / SETTINGS, lambda f: f.write(json.dumps(settings, indent=2).encode()))
    return d


def read_settings(out: Path, world_size: int) -> dict[str, Any]:
    """resume.json of the interrupted run whose --out was `out`, refused unless it was written by
    `world_size` processes (a resumed run must shard its rows and RNG states the same way)."""
    d = partial_dir(out)
    if not (d / SETTINGS).is_file():
        hint = ""
        if (Path(out) / "run.json").is_file():
            hint = "; that run finished (its run directory is complete), so there is nothing to resume"
        raise CheckpointError(f"{d / SETTINGS}: no checkpoint of an interrupted run at {out}{hint}")
    try:
        settings = json.loads((d / SETTINGS).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{d / SETTINGS}: cannot be read as JSON: {err}") from err
    if not isinstance(settings, dict):
        raise CheckpointError(f"{d / SETTINGS}: expected a JSON object")
    for key in ("data", "config", "world_size"):
        if key not in settings:
            raise CheckpointError(f"{d / SETTINGS}: field {key!r} missing")
    had = settings["world_size"]
    if had != world_size:
        raise CheckpointError(
            f"{out}: its checkpoint was written by {had} process(es); resume it with the same number "
            f"(--nproc {had})"
        )
    return settings


def save(d: Path, state: dict[str, Any]) -> None:
    _write_atomic(Path(d) / STATE, lambda f: torch.save(state, f))


def load(d: Path) -> dict[str, Any] | None:
    """The latest checkpoint in `d`, or None when the run was killed before its first one."""
    path = Path(d) / STATE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file: torch raises several kinds
        raise CheckpointError(
            f"{path}: cannot be loaded ({type(err).__name__}: {err}); it was written atomically, so "
            "it was changed after mmctr wrote it. Start the run again with --overwrite"
        ) from err


def finish(d: Path) -> None:
    """The run directory is in place: the checkpoints are no longer needed."""
    if is_partial_dir(Path(d)):
        shutil.rmtree(d)
