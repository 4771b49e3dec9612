"""Training past one process, and past memory: what `mmctr train --nproc` and `--stream` cost and give.

    python scripts/bench_scale.py procs  --data DATA --out docs/benchmarks/scale_procs.json
    python scripts/bench_scale.py stream --data DATA_FULL --out docs/benchmarks/scale_stream.json [--times 4]

`procs`: 1 process (2 threads) against 2 processes (1 thread each, gloo) on the same data, global batch
and seed, alternating, --repeats times each: samples/s, valid AUC, wall time, peak RSS per process.
`stream`: in-memory against `--stream` on DATA's train split and on a split --times as long (DATA's
train rows written --times over into a new data root that links DATA's other files), each for
--steps steps: peak RSS and samples/s. Every run is a fresh `mmctr train` under `/usr/bin/time`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

SUBDIR = "MicroLens_1M_x1"


def timed_train(data: Path, work: Path, name: str, config: dict, extra: list[str]) -> dict:
    """One `mmctr train` run: its metrics, wall time and the peak RSS of its largest process."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    cfg = work / f"{name}.yaml"
    cfg.write_text(json.dumps({"train": config}))
    cmd = ["/usr/bin/time", "-f", "%M %e", sys.executable, "-m", "mmctr", "train", "--data", str(data)]
    cmd += ["--out", str(out), "--config", str(cfg), "--no-progress", "--checkpoint-every", "0", *extra]
    load = os.getloadavg()[0]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    rss_kb, wall = p.stderr.strip().splitlines()[-1].split()
    m = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(out)
    return {
        "valid_auc": m["valid_auc"],
        "train_samples_per_s": m["train_samples_per_s"],
        "train_seconds": m["train_seconds"],
        "wall_s": float(wall),
        "peak_rss_mb": int(rss_kb) / 1024,
        "load_avg_start": load,
    }


def median_of(runs: list[dict]) -> dict:
    keys = ("valid_auc", "train_samples_per_s", "wall_s", "peak_rss_mb", "train_seconds")
    return {k: statistics.median(r[k] for r in runs) for k in keys} | {"runs": runs}


def procs(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    base = {"batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed}
    if args.steps:
        base["max_steps"] = args.steps
    one, two = [], []
    for i in range(args.repeats):
        print(f"round {i + 1}/{args.repeats}: 1 process (2 threads)", flush=True)
        one.append(timed_train(args.data, work, "one", {**base, "threads": 2}, []))
        print(f"round {i + 1}/{args.repeats}: 2 processes (1 thread each)", flush=True)
        two.append(timed_train(args.data, work, "two", {**base, "threads": 1}, ["--nproc", "2"]))
    shutil.rmtree(work, ignore_errors=True)
    return {"settings": base, "one_process": median_of(one), "two_processes": median_of(two)}


def repeat_split(data: Path, times: int, out: Path) -> Path:
    """A data root whose train split is DATA's written `times` over; the other files are links."""
    (out / SUBDIR).mkdir(parents=True)
    for f in (data / SUBDIR).iterdir():
        if f.name != "train.parquet":
            os.symlink(f.resolve(), out / SUBDIR / f.name)
    for f in data.iterdir():
        if f.name not in (SUBDIR, "truth"):
            os.symlink(f.resolve(), out / f.name)
    src = pq.ParquetFile(data / SUBDIR / "train.parquet")
    with pq.ParquetWriter(out / SUBDIR / "train.parquet", src.schema_arrow) as w:
        for _ in range(times):
            for g in range(src.num_row_groups):
                w.write_table(src.read_row_group(g))
    return out


def stream(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=args.work))
    cfg = {
        "batch_size": args.batch_size,
        "epochs": 1,
        "seed": args.seed,
        "max_steps": args.steps,
        "threads": 2,
    }
    roots = {"x1": args.data}
    if args.times > 1:
        t = time.perf_counter()
        roots[f"x{args.times}"] = repeat_split(args.data, args.times, work / f"x{args.times}")
        print(f"wrote the x{args.times} split in {time.perf_counter() - t:.0f} s", flush=True)
    result = {"settings": cfg}
    for label, root in roots.items():
        rows = pq.ParquetFile(Path(root) / SUBDIR / "train.parquet").metadata.num_rows
        for mode, extra in (("in_memory", []), ("stream", ["--stream"])):
            runs = []
            for i in range(args.repeats):
                print(f"{label} ({rows:,} train rows), {mode}, run {i + 1}/{args.repeats}", flush=True)
                runs.append(timed_train(Path(root), work, f"{label}_{mode}", cfg, extra))
            result[f"{label}_{mode}"] = {"train_rows": rows, **median_of(runs)}
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("procs", "stream"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument(
        "--steps", type=int, default=0, help="stop each run after this many steps (0: whole epochs)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--times", type=int, default=4, help="stream: the long split is the train split this many times"
    )
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--work", type=Path, default=None, help="stream: where the long split is written")
    args = ap.parse_args()
    from mmctr.bench.machine import MachineInfo  # noqa: F401  (the same interpreter as the runs)

    result = procs(args) if args.what == "procs" else stream(args)
    result["command"] = "python scripts/bench_scale.py " + " ".join(sys.argv[1:])
    result["cpu"] = (
        subprocess.run(["lscpu"], capture_output=True, text=True)
        .stdout.split("Model name:")[-1]
        .splitlines()[0]
        .strip()
    )
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=1, default=str)[:4000])


if __name__ == "__main__":
    from mmctr.errors import script_exit

    script_exit(main)
