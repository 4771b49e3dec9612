"""HTTP serving beside the in-process request path, on the same requests, in one run.

For each run directory: time `score_one` (the path `mmctr serve` calls) in this process on the
loadtest's own request bodies, then start `mmctr serve` as a subprocess, load-test it at each
concurrency (`mmctr.serve.loadtest.run_loadtest`), stop it, and write one JSON and a markdown table.
HTTP overhead at concurrency 1 = HTTP p50 − in-process p50 (JSON parsing, validation, the event
loop, the response, the client).

    python scripts/bench_http.py --data DATA --runs RUN_DIN RUN_TDCN --concurrency 1 8 32 \\
        --duration 15 --out docs/benchmarks/http.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mmctr.bench.machine import cpu_model
from mmctr.serve.loadtest import request_bodies, run_loadtest
from mmctr.serve.ranker import RankInput, load_served, score_one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_process(run: Path, data: Path, n: int, warmup: int, candidates: int, seed: int) -> dict:
    torch.set_num_threads(1)
    served = load_served(run, precision="fp32", candidates=candidates)
    bodies = [json.loads(b) for b in request_bodies(data, n + warmup, candidates, seed, served.max_len)]
    times = []
    for i, b in enumerate(bodies):
        inp = RankInput(
            hist=np.asarray(b["history"], np.int64)[-served.max_len :],
            candidates=np.asarray(b["candidates"], np.int64),
            likes=np.asarray(b["likes"], np.int64),
            views=np.asarray(b["views"], np.int64),
            user_id=int(b["user_id"]),
        )
        t0 = time.perf_counter()
        score_one(served, inp)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return {
        "requests": len(times),
        "p50_ms": statistics.median(times),
        "p90_ms": float(np.percentile(times, 90)),
        "p99_ms": float(np.percentile(times, 99)),
    }


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"mmctr serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("mmctr serve did not become healthy")


def over_http(run: Path, data: Path, args: argparse.Namespace, window: float) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "mmctr.cli", "serve", "--run", str(run), "--port", str(port)]
    cmd += ["--threads", "1", "--precision", "fp32", "--batch-window-ms", str(window)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc)
        return run_loadtest(
            f"http://127.0.0.1:{port}",
            data,
            args.concurrency,
            args.duration,
            args.max_requests,
            args.candidates,
            seed=args.seed,
            log=lambda s: print(f"  [{run.name} window {window}] {s}", flush=True),
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def table(records: list[dict]) -> str:
    lines = [
        "| run | batch window | concurrency | requests/s | HTTP p50 / p90 / p99 ms | in-process p50 / p99 ms "
        "| HTTP overhead p50 ms | errors |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in records:
        ip = r["in_process"]
        for lv in r["http"]["levels"]:
            c = lv["concurrency"]
            over = f"{lv['p50_ms'] - ip['p50_ms']:.2f}" if c == 1 else ""
            inproc = f"{ip['p50_ms']:.2f} / {ip['p99_ms']:.2f}" if c == 1 else ""
            lines.append(
                f"| {r['run']} | {r['window_ms']:g} ms | {c} | {lv['requests_per_s']:.1f} "
                f"| {lv['p50_ms']:.2f} / {lv['p90_ms']:.2f} / {lv['p99_ms']:.2f} | {inproc} | {over} "
                f"| {lv['errors']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--runs", type=Path, nargs="+", required=True)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--max-requests", type=int, default=100_000)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--windows", type=float, nargs="+", default=[0.0], help="--batch-window-ms values")
    p.add_argument("--inprocess-requests", type=int, default=500)
    p.add_argument("--seed", type=int, default=2025)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    records = []
    for run in args.runs:
        ip = in_process(run, args.data, args.inprocess_requests, 50, args.candidates, args.seed)
        print(f"{run.name}: in-process p50 {ip['p50_ms']:.2f} ms, p99 {ip['p99_ms']:.2f} ms", flush=True)
        for w in args.windows:
            records.append(
                {
                    "run": run.name,
                    "window_ms": w,
                    "in_process": ip,
                    "http": over_http(run, args.data, args, w),
                }
            )
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "command": "python scripts/bench_http.py " + " ".join(sys.argv[1:]),
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    md = table(records)
    args.out.with_suffix(".md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
