"""The benchmark run: resolve the systems, measure the machine, run each system in its own
subprocess (repeats: timing only), aggregate medians, write bench.json, bench.md, auc_latency.png.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mmctr
from mmctr.bench.machine import MachineInfo
from mmctr.bench.spec import PEERS, BenchSettings, Hparams, SystemSpec, write_json
from mmctr.errors import ConfigError
from mmctr.outputs import BENCH_DIR, OutputError, check_out, move_into_place

SRC_DIR = Path(mmctr.__file__).resolve().parents[1]  # what a peer's interpreter needs on PYTHONPATH
REPO_DIR = SRC_DIR.parent

# Modules a family needs importable in its interpreter.
REQUIRED_MODULES = {
    "mmctr": ("mmctr",),
    "deepctr-torch": ("deepctr_torch", "sklearn"),
    "fuxictr": ("fuxictr", "polars", "pandas"),
}
# Where to look for a family's interpreter when no option names one: the env var, this
# interpreter, then a conventional side venv in the checkout (FuxiCTR's deps are kept out of ours).
PYTHON_ENV = {"deepctr-torch": "MMCTR_DEEPCTR_PYTHON", "fuxictr": "MMCTR_FUXICTR_PYTHON"}
SIDE_VENVS = {"deepctr-torch": ".venv-deepctr", "fuxictr": ".venv-fuxictr"}

# Medians across repeats for these; the rest come from the first (full) run.
TIMING_KEYS = (
    "train_samples_per_s",
    "train_step_ms",
    "train_data_ms",
    "train_compute_ms",
    "achieved_gflops",
    "infer_p50_ms",
    "infer_p99_ms",
    "infer_mean_ms",
    "batch_rows_per_s",
)


def din_hparams() -> Hparams:
    """The shared hyperparameters, read from mmctr's DIN config so that peers get exactly what our
    DIN gets."""
    from mmctr.config import resolve_run_config

    cfg = resolve_run_config("din")
    mp, tc = cfg.model_params, cfg.train
    base = Hparams()
    return Hparams(
        embedding_dim=mp.get("embedding_dim", base.embedding_dim),
        dnn_hidden=list(mp.get("dnn_hidden", base.dnn_hidden)),
        attention_hidden=list(mp.get("attention_hidden", base.attention_hidden)),
        attention_dropout=mp.get("attention_dropout", base.attention_dropout),
        net_dropout=mp.get("net_dropout", base.net_dropout),
        batch_norm=mp.get("batch_norm", base.batch_norm),
        embedding_reg=tc.embedding_reg,
        lr=tc.lr,
        batch_size=tc.batch_size,
        max_len=tc.max_len,
    )


# ----------------------------------------------------------------------------------------------
# which systems, in which interpreter


def missing_modules(python: str, modules: tuple[str, ...]) -> str | None:
    """None when `python` can import every module; else a short reason."""
    code = (
        "import importlib.util, sys\n"
        f"missing = [m for m in {list(modules)!r} if importlib.util.find_spec(m) is None]\n"
        "print(' '.join(missing)); sys.exit(1 if missing else 0)\n"
    )
    env = _child_env()
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot run {python}: {err}"
    if r.returncode != 0:
        return f"{python} lacks {r.stdout.strip() or r.stderr.strip()[-200:]}"
    return None


def find_python(family: str, explicit: str | None = None) -> tuple[str, str | None]:
    """The interpreter to run `family` in, and None, or the best guess and why it cannot run."""
    modules = REQUIRED_MODULES[family]
    if explicit:
        return explicit, missing_modules(explicit, modules)
    candidates = []
    if os.environ.get(PYTHON_ENV.get(family, "")):
        candidates.append(os.environ[PYTHON_ENV[family]])
    candidates.append(sys.executable)
    side = REPO_DIR / SIDE_VENVS.get(family, "-") / "bin" / "python"
    if side.exists():
        candidates.append(str(side))
    reasons = []
    for python in candidates:
        why = missing_modules(python, modules)
        if why is None:
            return python, None
        reasons.append(why)
    return candidates[0], "; ".join(reasons)


def resolve_systems(
    models: list[str] | None, peers: list[str], pythons: dict[str, str | None] | None = None
) -> tuple[list[SystemSpec], list[dict[str, str]]]:
    """The systems to measure and those skipped (with why). `models` are mmctr model names with an
    optional @variant (`din`, `din@bf16`, `mmctr/din@fp32`); None means every registered model."""
    from mmctr.models import MODELS

    pythons = pythons or {}
    specs: list[SystemSpec] = []
    for m in list(MODELS) if models is None else models:
        name = m if m.startswith("mmctr/") else f"mmctr/{m}"
        try:
            spec = SystemSpec.parse(name, python=sys.executable)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if spec.model not in MODELS:
            raise ConfigError(f"--models {m}: unknown model {spec.model!r}; available: {', '.join(MODELS)}")
        specs.append(spec)
    skipped: list[dict[str, str]] = []
    for peer in peers:
        if peer not in PEERS:
            raise ConfigError(f"--peers {peer}: unknown peer; known: {', '.join(PEERS)}")
        python, why = find_python(peer, pythons.get(peer))
        if why:
            skipped.append({"system": f"{peer}/din", "reason": f"not installed ({why})"})
            continue
        specs.append(SystemSpec.parse(f"{peer}/din", python=python))
    return specs, skipped


# ----------------------------------------------------------------------------------------------
# subprocesses


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC_DIR), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
    return env


def _run_logged(cmd: list[str], log_path: Path, echo: Callable[[str], None], timeout: float | None) -> int:
    """Run `cmd`, all output to `log_path`, its progress lines (`[system] ...`) echoed."""
    t0 = time.monotonic()
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_child_env(), bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log_file.write(line)
            if line.startswith("["):
                echo("  " + line.rstrip())
            if timeout and time.monotonic() - t0 > timeout:
                proc.kill()
                log_file.write(f"\n[harness] killed after {timeout:.0f} s\n")
                break
        return proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""


def wait_for_quiet(max_load: float, max_wait: float, log: Callable[[str], None]) -> float:
    """Wait (up to `max_wait` s) until the 1-minute load average is below `max_load`, so that a
    timing does not share the cores with someone else's job; return the load average at the end."""
    load = os.getloadavg()[0]
    if max_load <= 0 or load < max_load:
        return load
    log(f"  waiting for the 1-min load average ({load:.2f}) to fall below {max_load}")
    t0 = time.monotonic()
    while load >= max_load and time.monotonic() - t0 < max_wait:
        time.sleep(15)
        load = os.getloadavg()[0]
    if load >= max_load:
        log(f"  still {load:.2f} after {max_wait:.0f} s; measuring anyway (recorded in the record)")
    return load


# how a child's full disk or file-size limit reads in its log
_DISK_FULL = ("No space left on device", "File too large", "Disk quota exceeded")


def run_child(
    spec: SystemSpec,
    settings: BenchSettings,
    run_dir: Path,
    tag: str,
    log: Callable[[str], None],
    timeout: float | None = None,
) -> dict[str, Any] | str:
    """One measurement of one system in a fresh process: its record, or the reason it failed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path, settings_path = run_dir / f"{tag}.spec.json", run_dir / f"{tag}.settings.json"
    out_path, log_path = run_dir / f"{tag}.json", run_dir / f"{tag}.log"
    write_json(spec_path, dataclasses.asdict(spec))
    settings_path.write_text(settings.to_json())
    out_path.unlink(missing_ok=True)
    cmd = [
        spec.python or sys.executable,
        "-m",
        "mmctr.bench.child",
        str(spec_path),
        str(settings_path),
        str(out_path),
    ]
    rc = _run_logged(cmd, log_path, log, timeout)
    if rc != 0 or not out_path.exists():
        tail = _tail(log_path)
        if any(words in tail for words in _DISK_FULL):  # no use measuring the next system
            raise OSError(errno.ENOSPC, f"{spec.system}: its process could not write its results")
        return f"exit status {rc}; see {log_path}:\n{tail}"
    return json.loads(out_path.read_text())


def _finished(path: Path) -> dict[str, Any] | None:
    """A system's record from an earlier, interrupted run of this bench, if it was complete."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "system" in rec and "peak_rss_mb" in rec else None


def measure_machine(out_dir: Path, n: int, log: Callable[[str], None]) -> MachineInfo:
    path = out_dir / "machine.json"
    cmd = [sys.executable, "-m", "mmctr.bench.machine", str(path), "--n", str(n)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
    if r.returncode != 0:
        raise RuntimeError(f"matmul measurement failed:\n{r.stderr[-2000:]}")
    info = MachineInfo.from_dict(json.loads(path.read_text()))
    rates = ", ".join(f"{m.dtype} {m.threads}t {m.gflops_best:.0f}" for m in info.matmul)
    log(f"machine: {info.cpu}, {info.cores} cores, torch {info.torch}; matmul GFLOP/s (best): {rates}")
    return info


# ----------------------------------------------------------------------------------------------
# aggregation


def aggregate(runs: list[dict[str, Any]], machine: MachineInfo) -> dict[str, Any]:
    """One record from a system's runs: timing medians over all runs, AUC etc. from the first."""
    rec = dict(runs[0])
    rec["repeats"] = len(runs)
    rec["repeat_values"] = {k: [r[k] for r in runs] for k in TIMING_KEYS}
    for k in TIMING_KEYS:
        rec[k] = statistics.median(r[k] for r in runs)
    rec["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    # at the start only: by the end the average includes this system's own threads
    rec["load_avg_max"] = max(r["load_avg_start"] for r in runs)
    peak = machine.peak_gflops(rec["precision"], rec["train_threads"])
    rec["peak_gflops"] = peak
    rec["pct_of_peak"] = 100.0 * rec["achieved_gflops"] / peak if peak else float("nan")
    return rec


def add_comparisons(records: list[dict[str, Any]]) -> None:
    """Each mmctr DIN record gets `vs`: its ratios against every peer measured in the same run."""
    peers = [r for r in records if r["family"] != "mmctr"]
    for r in records:
        if r["family"] != "mmctr":
            continue
        r["vs"] = {
            p["system"]: {
                "train_speedup": r["train_samples_per_s"] / p["train_samples_per_s"],
                "p99_speedup": p["infer_p99_ms"] / r["infer_p99_ms"],
                "batch_speedup": r["batch_rows_per_s"] / p["batch_rows_per_s"],
                "auc_delta": r["valid_auc"] - p["valid_auc"],
            }
            for p in peers
        }


# ----------------------------------------------------------------------------------------------


def run_bench(
    settings: BenchSettings,
    out: Path,
    models: list[str] | None = None,
    peers: list[str] | tuple[str, ...] = PEERS,
    repeats: int = 1,
    pythons: dict[str, str | None] | None = None,
    matmul_n: int = 2048,
    timeout: float | None = None,
    max_load: float = 0.0,
    max_wait: float = 1800.0,
    command: str = "",
    log: Callable[[str], None] = print,
    overwrite: bool = False,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Measure every system; write DIR/bench.json (list of records), bench.md, auc_latency.png.
    The directory is written as DIR.partial/ and renamed when complete; `resume` continues a killed
    run of the same bench, measuring only the systems it had not finished."""

    final = Path(out)
    check_out(final, BENCH_DIR, overwrite)
    # Work happens in OUT.partial/, renamed to OUT when complete. A killed bench leaves it, with
    # every system measured so far; the same command with `resume` measures only the others.
    out = final.parent / f"{final.name}.partial"
    wanted = {
        "settings": json.loads(settings.to_json()),
        "models": models,
        "peers": list(peers),
        "repeats": repeats,
        "pythons": pythons,
        "matmul_n": matmul_n,
    }
    _open_partial(out, wanted, resume, overwrite)
    try:
        records = _run_bench(
            settings,
            out,
            models,
            peers,
            repeats,
            pythons,
            matmul_n,
            timeout,
            max_load,
            max_wait,
            command,
            log,
        )
        (out / PARTIAL_SETTINGS).unlink()
        move_into_place(out, final, BENCH_DIR, overwrite)
    except BaseException:
        if not any(_finished(p) for p in (out / "runs").glob("*.json")):
            shutil.rmtree(out, ignore_errors=True)  # nothing measured: nothing worth resuming
        raise
    log(f"wrote {final / 'bench.json'}, {final / 'bench.md'}, {final / 'auc_latency.png'}")
    return records


PARTIAL_SETTINGS = "resume.json"


def _open_partial(out: Path, wanted: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """Create OUT.partial/, or reopen it for --resume when it holds the same bench's results."""
    marker = out / PARTIAL_SETTINGS
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not marker.is_file():
            raise OutputError(
                f"{out}: exists and is not an interrupted `mmctr bench`; it is where this --out is "
                "measured. Move it away or choose another --out"
            )
        try:
            had = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            had = None
        if resume and had == wanted:
            return
        if resume:
            raise OutputError(
                f"{out}: holds an interrupted bench with other settings (data, systems, repeats or "
                "hyperparameters); rerun it with the same arguments, or pass --overwrite to start again"
            )
        if not overwrite:
            raise OutputError(
                f"{out}: holds an interrupted bench; add --resume to the same command to measure only "
                "the systems not yet measured, or pass --overwrite to start again"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_json(marker, wanted)


def _run_bench(
    settings: BenchSettings,
    out: Path,
    models: list[str] | None,
    peers: list[str] | tuple[str, ...],
    repeats: int,
    pythons: dict[str, str | None] | None,
    matmul_n: int,
    timeout: float | None,
    max_load: float,
    max_wait: float,
    command: str,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    from mmctr.bench.plot import plot_auc_latency
    from mmctr.bench.report import write_markdown

    settings = dataclasses.replace(settings, work_dir=str((out / "work").resolve()))
    specs, skipped = resolve_systems(models, list(peers), pythons)
    for s in skipped:
        log(f"skipping {s['system']}: {s['reason']}")
    wait_for_quiet(max_load, max_wait, log)
    try:  # a resumed bench keeps the machine measured with the systems it kept
        machine = MachineInfo.from_dict(json.loads((out / "machine.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        machine = measure_machine(out, matmul_n, log)

    records: list[dict[str, Any]] = []
    for spec in specs:
        slug = spec.system.replace("/", "_").replace("@", "-")
        runs: list[dict[str, Any]] = []
        for i in range(repeats):
            # the first run also trains for AUC; repeats re-time only
            s = dataclasses.replace(settings, measure_auc=i == 0)
            done = _finished(out / "runs" / f"{slug}.{i}.json")
            if done is not None:
                log(f"{spec.system}: run {i + 1}/{repeats} measured before the interruption; kept")
                runs.append(done)
                continue
            log(f"{spec.system}: run {i + 1}/{repeats}{' (timing only)' if i else ''}")
            wait_for_quiet(max_load, max_wait, log)
            result = run_child(spec, s, out / "runs", f"{slug}.{i}", log, timeout)
            if isinstance(result, str):
                log(f"{spec.system} failed: {result}")
                skipped.append({"system": spec.system, "reason": f"failed: {result.splitlines()[0]}"})
                runs = []
                break
            runs.append(result)
        if runs:
            records.append(aggregate(runs, machine))
    add_comparisons(records)

    write_json(out / "bench.json", records)
    meta = {
        "command": command,
        "data": settings.data,
        "settings": json.loads(settings.to_json()),
        "repeats": repeats,
        "skipped": skipped,
    }
    write_json(out / "meta.json", meta)
    (out / "bench.md").write_text(write_markdown(records, machine, meta))
    plot_auc_latency(records, out / "auc_latency.png")
    return records
