"""One system, measured in its own process: `python -m mmctr.bench.child SPEC.json SETTINGS.json OUT.json`.

Its own process so that peak RSS, thread pools and allocator state belong to that system alone; and
possibly another interpreter, so that a peer's dependencies (FuxiCTR pulls Ray and polars<2) stay out
of mmctr's environment.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmctr.bench.spec import BenchSettings, SystemSpec, write_json


def _mmctr(spec: SystemSpec, data: Any, settings: BenchSettings) -> Any:
    from mmctr.bench.ours import MMCTRSystem

    return MMCTRSystem(spec, data, settings)


def _deepctr(spec: SystemSpec, data: Any, settings: BenchSettings) -> Any:
    from mmctr.bench.peers_deepctr import DeepCTRDIN

    return DeepCTRDIN(data, settings)


def _fuxictr(spec: SystemSpec, data: Any, settings: BenchSettings) -> Any:
    from mmctr.bench.peers_fuxictr import FuxiCTRDIN

    return FuxiCTRDIN(data, settings)


# One explicit registry: family → adapter factory (imports happen only for the family measured).
ADAPTERS: dict[str, Callable[[SystemSpec, Any, BenchSettings], Any]] = {
    "mmctr": _mmctr,
    "deepctr-torch": _deepctr,
    "fuxictr": _fuxictr,
}

# The Python package each family needs, for "is it installed?" checks from the harness.
PACKAGES = {"mmctr": "mmctr", "deepctr-torch": "deepctr_torch", "fuxictr": "fuxictr"}


def _version(family: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    dist = {"mmctr": "mmctr", "deepctr-torch": "deepctr-torch", "fuxictr": "fuxictr"}[family]
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _code_state() -> dict[str, Any]:
    """The commit the measured code came from, and whether mmctr's sources differed from it (others
    may be changing the models while a long benchmark runs)."""
    import subprocess

    import mmctr

    src = Path(mmctr.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "--", str(src)],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": "", "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(dirty)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m mmctr.bench.child SPEC.json SETTINGS.json OUT.json", file=sys.stderr)
        return 2
    spec = SystemSpec(**json.loads(Path(args[0]).read_text()))
    settings = BenchSettings.from_json(Path(args[1]).read_text())
    out = Path(args[2])

    import torch

    from mmctr.bench.measure import measure
    from mmctr.data.reader import load_dataset
    from mmctr.host import cpu_model

    def log(msg: str) -> None:
        print(f"[{spec.system}] {msg}", flush=True)

    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]  # others' jobs on the machine, recorded beside the timings
    log(f"loading {settings.data}")
    data = load_dataset(settings.data, max_len=settings.hparams.max_len, splits=("train", "valid"))
    if 0 < settings.max_train_rows < len(data["train"]):
        import numpy as np

        data.splits["train"] = data["train"].take(np.arange(settings.max_train_rows))
    log(f"building the {spec.family} adapter")
    system = ADAPTERS[spec.family](spec, data, settings)
    rec: dict[str, Any] = {
        "system": spec.system,
        "family": spec.family,
        "model": spec.model,
        "variant": spec.variant,
        **_code_state(),
    }
    rec.update(measure(system, data, settings, log=log))
    rec.update(
        {
            "version": _version(spec.family),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "interpreter": sys.executable,
            "cpu": cpu_model(),
            "train_rows": len(data["train"]),
            "valid_rows": len(data["valid"]),
            "batch_size": settings.hparams.batch_size,
            "hparams": vars(settings.hparams),
            "child_seconds": time.perf_counter() - t0,
            "load_avg_start": load_start,
            "load_avg_end": os.getloadavg()[0],
        }
    )
    write_json(out, rec)
    log(f"done in {rec['child_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
