"""`mmctr bench --serving RUN ...`: the serving numbers of trained runs in one place.

In process, for each run: its serving options side by side (fp32, bf16, bf16 without packed
linears, int8-dynamic, ONNX Runtime fp32 / int8 for a DIN when onnxruntime is installed, and the
history caps `h16`, `h32`...), each with its valid AUC (the split cut the same way for a cap) and its
single-request latency on one thread; the options answer the same requests interleaved (request i
goes to every option before request i+1), so a noisy neighbour slows all of them alike. Beside each
latency: the FLOPs of the request (counted by torch on the fp32 copy with the same cap) over its
time, and the machine's 1-thread 2048² matmul rate in fp32 and bf16, measured before and after the
requests in the same run.

Over HTTP (`--http`), for each run, micro-batching window and worker count: `mmctr serve` started
as a subprocess on 127.0.0.1; first the HTTP overhead at concurrency 1, paired request by request
(each body sent to the server, then scored by `score_one` in this process: the median of the
differences), then the load test at each concurrency (`mmctr.serve.loadtest`).

Every request comes from `mmctr.serving.make_requests` (the load test's bodies too).
Writes OUT/serving_bench.json, OUT/serving_bench.md and, with --http, OUT/serving_load.png.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmctr.bench.spec import DEFAULT_SERVING_OPTIONS as DEFAULT_OPTIONS
from mmctr.bench.spec import SERVING_OPTIONS as OPTIONS
from mmctr.errors import ConfigError
from mmctr.outputs import OutputKind, check_out, move_into_place, temp_beside

SERVING_BENCH_DIR = OutputKind(
    "serving bench output", lambda p: p.is_dir() and (p / "serving_bench.json").exists()
)


@dataclass
class ServingBenchSettings:
    runs: list[Path]
    data: Path
    out: Path
    options: list[str] | None = None  # None: DEFAULT_OPTIONS, and bf16 where it is fast
    max_history: list[int] = field(default_factory=lambda: [16])
    requests: int = 300
    warmup: int = 20
    candidates: int = 100
    seed: int = 2025
    http: bool = False
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    duration: float = 12.0
    windows: list[float] = field(default_factory=lambda: [0.0])
    workers: list[int] = field(default_factory=lambda: [1])  # `mmctr serve --workers` values
    overwrite: bool = False
    command: str = ""

    def check(self) -> None:
        if self.options is None:
            from mmctr.training.loop import bf16_is_fast

            self.options = ["fp32", *(["bf16"] if bf16_is_fast() else []), *DEFAULT_OPTIONS[1:]]
        unknown = [o for o in self.options if o not in OPTIONS]
        if unknown:
            raise ConfigError(f"--serving-options {unknown}: expected some of {', '.join(OPTIONS)}")
        for name in ("requests", "candidates"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1")
        if self.warmup < 0:
            raise ConfigError("--warmup-requests must be 0 or more")
        if any(k < 1 for k in self.max_history):
            raise ConfigError(f"--max-history {self.max_history}: each cap must be at least 1")
        if any(w < 0 for w in self.workers):
            raise ConfigError(f"--workers {self.workers}: model threads are 0 (the event loop) or more")
        if any(w < 0 for w in self.windows):
            raise ConfigError(f"--windows {self.windows}: micro-batching windows are 0 ms or more")
        for run in self.runs:
            if not (Path(run) / "run.json").is_file():
                raise ConfigError(f"--serving {run}: not a run directory written by `mmctr train`")


# ----------------------------------------------------------------------------------------------
# the options of one run


def int8_copy(model: nn.Module) -> nn.Module:
    """fp32 serving copy with every nn.Linear called as a module quantised to int8 weights
    (activations quantised per call). The DIN attention's first layer stays fp32: its weight is
    sliced, not called."""
    from mmctr.serving import for_serving

    served = for_serving(model, pack=False)  # quantize_dynamic copies it: no opaque oneDNN weights
    names = {
        n for n, m in served.named_modules() if isinstance(m, nn.Linear) and not n.endswith("attention.first")
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        return torch.ao.quantization.quantize_dynamic(served, names, dtype=torch.qint8)


def build_options(model: nn.Module, names: list[str], caps: list[int], workdir: Path, log) -> dict[str, Any]:
    """name → (request scorer, split scorer, history cap). ONNX Runtime sessions fix their thread
    count, so they get a 1-thread session for requests and a 2-thread one for the valid split."""
    from mmctr.serving import for_serving

    out: dict[str, tuple[Any, Any, int | None]] = {}
    for name in names:
        if name == "fp32":
            m = for_serving(model)
        elif name == "bf16":
            m = for_serving(model, bf16=True)
        elif name == "bf16-unpacked":
            m = for_serving(model, bf16=True, pack=False)
        elif name == "int8-dynamic":
            m = int8_copy(model)
        else:  # ort-fp32 / ort-int8
            if not hasattr(model, "prepare_serving") or importlib.util.find_spec("onnxruntime") is None:
                log(f"  {name}: skipped (a DIN and the `ort` extra are needed)")
                continue
            from mmctr.ort import OrtDIN

            one = OrtDIN.from_model(model, workdir / name, 1, "int8" if name == "ort-int8" else None)
            out[name] = (one, OrtDIN(*one.paths, threads=2), None)
            continue
        out[name] = (m, m, None)
    for k in caps:
        m = for_serving(model, max_history=k)
        out[f"fp32 h{k}"] = (m, m, k)
    return out


def request_flops(model: nn.Module, batch) -> float:
    """FLOPs of one request through the fp32 serving copy (matmuls and the like, as torch counts
    them; embedding lookups are free)."""
    from mmctr.bench.machine import flop_counter
    from mmctr.serving import score_request

    with flop_counter() as counter:
        score_request(model, batch)
    return float(counter.get_total_flops())


def in_process(run: Path, data_for, settings: ServingBenchSettings, log=print) -> dict[str, Any]:
    """AUC, latency and achieved GFLOP/s of every option of one run. `data_for(max_len)` gives the
    valid split with histories cut at the run's own max_len, as `mmctr serve` cuts a request's."""
    from mmctr.bench.machine import matmul_rate
    from mmctr.serving import cap_history, for_serving, make_requests, request_batch, warm_up
    from mmctr.training.loop import predict_split
    from mmctr.training.metrics import auc
    from mmctr.training.run_dir import load_run

    cfg, model, facts = load_run(run)
    data = data_for(int(facts.get("max_len", cfg.train.max_len)))
    with tempfile.TemporaryDirectory(prefix="mmctr-ort-") as tmp:
        options = build_options(model, settings.options, settings.max_history, Path(tmp), log)
        valid = data["valid"]
        res: dict[str, dict[str, Any]] = {}
        threads = torch.get_num_threads()
        for name, (_, scorer, cap) in options.items():
            split = cap_history(valid, cap)
            res[name] = {"valid_auc": auc(valid.label, predict_split(scorer, split, 8192, bf16=False))}
        torch.set_num_threads(1)
        try:
            for one, _, _ in options.values():
                warm_up(one, candidates=settings.candidates, max_len=data.max_len)
            sides = {"fp32": 2048, "bf16": bf16_matmul_side()}
            rates = {d: [matmul_rate(d, 1, n=n).gflops] for d, n in sides.items()}
            reqs = make_requests(
                data, settings.warmup + settings.requests, settings.candidates, settings.seed
            )
            lengths = np.array([int((r.hist > 0).sum()) for r in reqs[settings.warmup :]])
            at_p99 = p99_history_batches(data, int(np.percentile(lengths, 99)), settings)
            batches = [request_batch(r.hist, r.targets, r.likes, r.views) for r in reqs]
            times = _time_interleaved(options, batches, settings.warmup)
            # the requests at the p99 history length, twice over after one untimed pass
            times_p99 = _time_interleaved(options, at_p99 * 3, len(at_p99))
            for d in rates:
                rates[d].append(matmul_rate(d, 1, n=sides[d]).gflops)
            timed = batches[settings.warmup :]
            flops: dict[int | None, np.ndarray] = {}
            flops_p99: dict[int | None, np.ndarray] = {}
            for cap in {c for _, _, c in options.values()}:
                counter = for_serving(
                    model, pack=False, max_history=cap
                )  # packed linears are opaque to the counter
                flops[cap] = np.array([request_flops(counter, b) for b in timed])
                # the p99 requests were timed twice over: their counts, once each, in that order
                flops_p99[cap] = np.tile([request_flops(counter, b) for b in at_p99], 2)
        finally:
            torch.set_num_threads(threads)
    mean_rate = {d: float(np.mean(r)) for d, r in rates.items()}
    for name, (_, _, cap) in options.items():
        t = np.array(times[name])
        rate = flops[cap] / (t * 1e6)  # GFLOP/s of each request
        rate_p99 = flops_p99[cap] / (np.array(times_p99[name]) * 1e6)
        res[name].update(
            p50_ms=float(np.percentile(t, 50)),
            p99_ms=float(np.percentile(t, 99)),
            p99_over_p50=float(np.percentile(t, 99) / np.percentile(t, 50)),
            mflop_per_request=float(np.median(flops[cap]) / 1e6),
            gflops_p50=float(np.median(rate)),
            ms_at_p99_history=float(np.median(times_p99[name])),
            gflops_at_p99_history=float(np.median(rate_p99)),
            **{
                f"pct_of_{d}_matmul_at_p99_history": 100.0 * float(np.median(rate_p99)) / r
                for d, r in mean_rate.items()
            },
            history_cap=cap,
        )
    return {
        "run": str(run),
        "model": cfg.model,
        "history_len_p50": float(np.median(lengths)),
        "history_len_p90": float(np.percentile(lengths, 90)),
        "history_len_p99": float(np.percentile(lengths, 99)),
        "requests_at_p99_history": len(at_p99),
        "matmul_gflops_1thread": {
            d: {"n": sides[d], "before": r[0], "after": r[1]} for d, r in rates.items()
        },
        "options": res,
    }


def _time_interleaved(options: dict, batches: list, skip: int) -> dict[str, list[float]]:
    """Each batch scored by every option in turn, so that they share the host's noise; the first
    `skip` are not timed. Milliseconds per option."""
    from mmctr.serving import score_request

    times: dict[str, list[float]] = {k: [] for k in options}
    for i, batch in enumerate(batches):
        for name, (one, _, _) in options.items():
            t0 = time.perf_counter()
            score_request(one, batch)
            if i >= skip:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def p99_history_batches(data, length: int, settings: ServingBenchSettings, n: int = 40) -> list:
    """Up to `n` requests whose history is exactly `length` items: valid rows with at least that
    many, cut to their `length` most recent (the issue's request "at the valid p99 history")."""
    from mmctr.serving import make_requests, request_batch

    valid = data["valid"]
    rows = np.flatnonzero(valid.hist_len >= max(length, 1))
    reqs = make_requests(data, min(n, len(rows)), settings.candidates, settings.seed + 1, rows=rows)
    return [request_batch(r.hist[r.hist > 0][-length:], r.targets, r.likes, r.views) for r in reqs]


def bf16_matmul_side() -> int:
    """The bf16 rate is measured at 2048² as the issue asks, except on torch's scalar bf16 path
    (~1 GFLOP/s on a CPU without AVX-512), where a 2048² matmul takes ~15 s: there at 512², a size
    that path's rate hardly depends on."""
    from mmctr.bench.machine import matmul_rate

    return 2048 if matmul_rate("bf16", 1, n=256, repeats=3, warmup=1).gflops >= 10 else 512


# ----------------------------------------------------------------------------------------------
# over HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise ConfigError(f"mmctr serve exited with {proc.returncode} before answering: {err}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise ConfigError(f"mmctr serve did not answer /healthz within {timeout:.0f} s")


def paired_overhead(
    port: int, run: Path, settings: ServingBenchSettings, n: int = 300, warmup: int = 30
) -> dict:
    """The HTTP overhead at concurrency 1: each of the load test's bodies is sent to the server (one
    keep-alive connection, the client in this process); the overhead of a request is its round trip
    minus the time the server's model took for it (`model_ms`, measured on the thread that ran it).
    The same body is then scored by `score_one` here on 1 thread, fp32, for the in-process p50/p99
    (and in place of the server's model time under micro-batching, where the server has none).
    (Until 2026-12-01 the overhead was the round trip minus that in-process time: paired request by
    request, but across two processes, and it moved by up to 1 ms between runs.)"""
    from mmctr.serve.app import parse_rank
    from mmctr.serve.loadtest import BlockingConnection, parse_target, request_bodies
    from mmctr.serve.ranker import load_served, score_one

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    conn = BlockingConnection(parse_target(f"http://127.0.0.1:{port}"))
    try:
        served = load_served(run, precision="fp32", candidates=settings.candidates)
        bodies = request_bodies(settings.data, n + warmup, settings.candidates, settings.seed, served.max_len)
        over, over_inproc, inproc, handler = [], [], [], []
        server_timed = 0
        for i, raw in enumerate(bodies):
            t0 = time.perf_counter()
            status, answer = conn.request("POST", "/v1/rank", raw)
            t_http = (time.perf_counter() - t0) * 1e3
            if status != 200:
                raise ConfigError(f"mmctr serve answered HTTP {status}: {answer[:300]!r}")
            inp = parse_rank(json.loads(raw), served, settings.candidates)  # as the server reads it
            t0 = time.perf_counter()
            score_one(served, inp)
            t_in = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                reply = json.loads(answer)
                # under micro-batching the server has no model time of the request's own: the
                # in-process time stands in for it
                model_ms = t_in if reply.get("model_ms") is None else float(reply["model_ms"])
                server_timed += reply.get("model_ms") is not None
                over.append(t_http - model_ms)
                over_inproc.append(t_http - t_in)
                inproc.append(t_in)
                handler.append((float(reply["ms"]), model_ms))  # the server's own times
    finally:
        conn.close()
        torch.set_num_threads(threads)
    return {
        "requests": len(over),
        "p50_ms": statistics.median(inproc),
        "p99_ms": float(np.percentile(inproc, 99)),
        "overhead_p50_ms": statistics.median(over),
        "overhead_p90_ms": float(np.percentile(over, 90)),
        # the overhead split by the `ms` the server reports (body read and parsed to response
        # built): the handler's own time beyond the model, and everything outside the handler
        # (HTTP, uvicorn, the client)
        "handler_extra_p50_ms": statistics.median(h - m for h, m in handler),
        "outside_handler_p50_ms": statistics.median(
            o + m - h for o, (h, m) in zip(over, handler, strict=True)
        ),
        "model_time": "server" if server_timed == len(over) else "in-process",
        "server_model_p50_ms": statistics.median(m for _, m in handler)
        if server_timed == len(over)
        else None,
        # the measure used until 2026-12-01: round trip minus `score_one` in this process
        "overhead_vs_in_process_p50_ms": statistics.median(over_inproc),
    }


def over_http(
    run: Path, settings: ServingBenchSettings, window: float, workers: int, log=print
) -> tuple[dict, dict]:
    """(the load test's result, the paired overhead at concurrency 1) of one `mmctr serve` process."""
    from mmctr.serve.loadtest import run_loadtest

    port = _free_port()
    cmd = [sys.executable, "-m", "mmctr", "serve", "--run", str(run), "--port", str(port)]
    cmd += [
        "--threads",
        "1",
        "--precision",
        "fp32",
        "--batch-window-ms",
        str(window),
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(port, proc)
        paired = paired_overhead(port, run, settings)
        log(
            f"  [{Path(run).name}, window {window:g} ms, workers {workers}] paired at concurrency 1: "
            f"in-process p50 {paired['p50_ms']:.2f} ms, HTTP overhead p50 {paired['overhead_p50_ms']:.2f} ms "
            f"({paired['handler_extra_p50_ms']:.2f} in the handler beyond the model, "
            f"{paired['outside_handler_p50_ms']:.2f} outside it)"
        )
        lt = run_loadtest(
            f"http://127.0.0.1:{port}",
            settings.data,
            settings.concurrency,
            settings.duration,
            100_000,
            settings.candidates,
            seed=settings.seed,
            log=lambda s: log(f"  [{Path(run).name}, window {window:g} ms, workers {workers}] {s}"),
        )
        return lt, paired
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------------------------
# the whole bench


def run_serving_bench(settings: ServingBenchSettings, log=print) -> dict[str, Any]:
    from mmctr import __version__
    from mmctr.data.reader import load_dataset
    from mmctr.host import cpu_model

    settings.check()
    check_out(settings.out, SERVING_BENCH_DIR, settings.overwrite)  # before measuring for minutes
    loaded: dict[int, Any] = {}

    def data_for(max_len: int):
        if max_len not in loaded:
            loaded[max_len] = load_dataset(settings.data, max_len=max_len, splits=("valid",))
        return loaded[max_len]

    result: dict[str, Any] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__},
        "mmctr_version": __version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "in_process": [],
        "http": [],
    }
    result["settings"]["runs"] = [str(r) for r in settings.runs]
    for run in settings.runs:
        log(f"{run}: serving options in process ...")
        result["in_process"].append(in_process(Path(run), data_for, settings, log))
    if settings.http:
        for run in settings.runs:
            for w, workers in [(w, k) for w in settings.windows for k in settings.workers]:
                lt, paired = over_http(Path(run), settings, w, workers, log)
                c1 = next((lv for lv in lt["levels"] if lv["concurrency"] == 1), None)
                result["http"].append(
                    {
                        "run": str(run),
                        "window_ms": w,
                        "workers": workers,
                        "in_process": paired,
                        "overhead_p50_ms": paired["overhead_p50_ms"],
                        # the load test's concurrency-1 p50 minus the paired in-process p50: not
                        # paired request by request, so noisier
                        "overhead_unpaired_p50_ms": None if c1 is None else c1["p50_ms"] - paired["p50_ms"],
                        "loadtest": lt,
                    }
                )
    result["load_average_end"] = os.getloadavg()
    write_outputs(result, settings.out, settings.overwrite)
    return result


def write_outputs(result: dict[str, Any], out: Path, overwrite: bool) -> None:
    tmp = temp_beside(out)
    tmp.mkdir(parents=True)
    try:
        (tmp / "serving_bench.json").write_text(json.dumps(result, indent=1) + "\n")
        (tmp / "serving_bench.md").write_text(render(result) + "\n")
        if result["http"]:
            plot_load(result, tmp / "serving_load.png")
        move_into_place(tmp, out, SERVING_BENCH_DIR, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["settings"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}. {s['requests']} timed requests of "
        f"{s['candidates']} candidates ({s['warmup']} warm-up), 1 thread. Command: `{s['command']}`",
        "",
    ]
    for r in result["in_process"]:
        mm = r["matmul_gflops_1thread"]
        rate = ", ".join(f"{d} ({v['n']}²) {v['before']:.1f} / {v['after']:.1f}" for d, v in mm.items())
        lines += [
            f"**{r['run']}** ({r['model']}): request history median {r['history_len_p50']:.0f}, "
            f"p90 {r['history_len_p90']:.0f}, p99 {r['history_len_p99']:.0f} items; 1-thread matmul "
            f"GFLOP/s before / after the requests: {rate}. `at p99 history`: {r['requests_at_p99_history']} "
            f"requests whose history is cut to exactly the p99 length, {r['history_len_p99']:.0f} items "
            "(median of 2 passes); their GFLOP/s as a % of the mean of each matmul rate.",
            "",
            "| option | valid AUC | p50 ms | p99 ms | p99/p50 | MFLOP/request | GFLOP/s p50 | at p99 history: "
            "ms | GFLOP/s | % of fp32 / bf16 matmul |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, o in r["options"].items():
            pct = " / ".join(f"{o[f'pct_of_{d}_matmul_at_p99_history']:.0f}%" for d in mm)
            rates = [f"{o['gflops_p50']:.2f}", f"{o['gflops_at_p99_history']:.2f}", pct]
            if o["mflop_per_request"] == 0:  # a counting baseline: no matmul to rate
                rates = ["–"] * 3
            lines.append(
                f"| {name} | {o['valid_auc']:.4f} | {o['p50_ms']:.2f} | {o['p99_ms']:.2f} | "
                f"{o['p99_over_p50']:.2f} | {o['mflop_per_request']:.1f} | {rates[0]} | "
                f"{o['ms_at_p99_history']:.2f} | {rates[1]} | {rates[2]} |"
            )
        lines.append("")
    if result["http"]:
        lines += [
            "Over HTTP (`mmctr serve --threads 1 --precision fp32 --workers W`, loopback). In process: `score_one` "
            "on the same bodies, each right after the same request over HTTP. The HTTP overhead of a request at "
            "concurrency 1 is its round trip minus the time the server's model took for it (`model_ms`; under "
            "micro-batching, the in-process time instead), median over the requests, split by the time the "
            "server reports for its handler into what the handler spent beyond the model (parsing, checks, the "
            "hop to the model thread, the response) and what was spent outside it (HTTP, uvicorn, the client); "
            "the two medians need not add up exactly:",
            "",
            "| run | batch window | workers | concurrency | requests/s | HTTP p50 / p90 / p99 ms | in-process p50 / p99 ms "
            "| HTTP overhead p50 ms (in handler + outside) | errors |",
            "|---|---:|---:|---:|---:|---|---|---|---:|",
        ]
        for h in result["http"]:
            ip = h["in_process"]
            inproc = f"{ip['p50_ms']:.2f} / {ip['p99_ms']:.2f}"
            over = f"{h['overhead_p50_ms']:.2f}" if h["overhead_p50_ms"] is not None else ""
            if over and "handler_extra_p50_ms" in ip:
                over += f" ({ip['handler_extra_p50_ms']:.2f} + {ip['outside_handler_p50_ms']:.2f})"
            for lv in h["loadtest"]["levels"]:
                one = lv["concurrency"] == 1
                lines.append(
                    f"| {Path(h['run']).name} | {h['window_ms']:g} ms | {h['workers']} | {lv['concurrency']} | "
                    f"{lv['requests_per_s']:.1f} | {lv['p50_ms']:.2f} / {lv['p90_ms']:.2f} / {lv['p99_ms']:.2f} "
                    f"| {inproc if one else ''} | {over if one else ''} | {lv['errors']} |"
                )
    return "\n".join(lines)


def plot_load(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for h in result["http"]:
        levels = h["loadtest"]["levels"]
        label = f"{Path(h['run']).name}, window {h['window_ms']:g} ms, workers {h['workers']}"
        x = [lv["requests_per_s"] for lv in levels]
        ax.plot(x, [lv["p50_ms"] for lv in levels], "o-", label=f"{label}: p50")
        ax.plot(x, [lv["p99_ms"] for lv in levels], "^:", label=f"{label}: p99")
    ax.set_xlabel("throughput, requests/s")
    ax.set_ylabel("latency, ms")
    ax.set_ylim(bottom=0)
    ax.set_title("mmctr serve: latency against load (one point per concurrency)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
