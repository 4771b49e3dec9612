"""Where commands write: one rule for every `--out`.

No command deletes what it did not create. An `--out` that does not exist, or is an empty
directory, is written. An existing non-empty one is refused unless `--overwrite` is given, and even
then it is replaced only when it is recognisably an earlier output of the same command (a run
directory for `train`, a data root for `synth`, a submission zip for `predict`, ...), and never
when it is `/`, the home directory, the working directory or one of its parents.

Outputs are written to a temporary path beside `--out` and renamed into place, so a crash leaves
either nothing or the complete previous output.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmctr.errors import MMCTRError


class OutputError(MMCTRError):
    """An `--out` that this command may not write or replace."""


@dataclass(frozen=True)
class OutputKind:
    """What a command writes: `what` names it in messages; `recognise(path)` says whether an
    existing path is an earlier output of the same command."""

    what: str
    recognise: Callable[[Path], bool]
    is_dir: bool = True


def _has_all(*names: str) -> Callable[[Path], bool]:
    return lambda p: p.is_dir() and all((p / n).exists() for n in names)


def _protected(path: Path) -> str | None:
    """Why `path` must never be replaced, or None."""
    real = path.resolve()
    if real == Path(real.anchor):
        return "it is the file system root"
    if real == Path.home().resolve():
        return "it is your home directory"
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        return "it is the working directory or one of its parents"
    return None


def check_out(path: Path, kind: OutputKind, overwrite: bool) -> None:
    """Refuse an `--out` before any work starts (and again before the final rename)."""
    path = Path(path)
    flag = "--overwrite"
    if not path.exists() and not path.is_symlink():
        return
    if kind.is_dir and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a directory; choose another --out for the {kind.what}")
    if not kind.is_dir and path.is_dir():
        raise OutputError(f"{path}: is a directory; --out names the {kind.what} file to write")
    if kind.is_dir and not any(path.iterdir()):
        return
    why = _protected(path)
    if why:
        raise OutputError(f"{path}: {why}; mmctr never replaces it. Choose a new --out for the {kind.what}")
    if not overwrite:
        raise OutputError(
            f"{path}: already exists{' and is not empty' if kind.is_dir else ''}; choose another --out, "
            f"or pass {flag} to replace an earlier {kind.what}"
        )
    if not kind.recognise(path):
        raise OutputError(
            f"{path}: is not a {kind.what} written by mmctr, so {flag} will not replace it "
            "(it would delete files mmctr did not create); choose another --out"
        )


def temp_beside(path: Path) -> Path:
    """A fresh temporary path in the same directory as `path` (so the final rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp)  # left by an earlier crashed process with this very id: ours
    elif tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    return tmp


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the system
    or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def move_into_place(tmp: Path, out: Path, kind: OutputKind, overwrite: bool) -> None:
    """Rename the finished `tmp` to `out`. An earlier output (checked again: it may have appeared
    while we worked) is replaced in one atomic step where the system allows it (a file: rename over
    it; a directory: swap the two, then delete the old one), so that at every moment `out` is
    either the complete earlier output or the complete new one. Elsewhere the earlier directory is
    moved aside first and deleted only once the new one is in place."""
    out = Path(out)
    check_out(out, kind, overwrite)
    if not out.exists():
        os.replace(tmp, out)
        return
    if kind.is_dir and not any(out.iterdir()):
        out.rmdir()  # empty: nothing of the user's is lost
        os.replace(tmp, out)
        return
    if not kind.is_dir:
        os.replace(tmp, out)  # atomic for a file
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp)  # now the earlier output
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)  # put the previous output back
        raise
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


# The kinds of output each command writes. A command that is added later adds its kind here.
RUN_DIR = OutputKind("run directory", _has_all("run.json", "config.yaml", "model.safetensors"))
SYNTH_DATA = OutputKind("data root from `mmctr synth`", _has_all("truth/world.json", "MicroLens_1M_x1"))
BENCH_DIR = OutputKind("bench output", _has_all("bench.json"))
MOVIELENS_DATA = OutputKind(
    "data root from `mmctr data movielens`", _has_all("conversion.json", "MicroLens_1M_x1")
)
DEMO_DIR = OutputKind("demo output", _has_all("demo_summary.json"))
