"""`mmctr serve`: answer ranking (and, with an index, search) requests over HTTP."""

from __future__ import annotations

import argparse
from pathlib import Path

# Off by default, after load tests at concurrency 1 / 8 / 32 on 2 shared cores (AMD EPYC, fp32,
# 1 torch thread): a 2 ms window gave the organisers' DIN no consistent gain (+5 to +10% requests/s
# at 8, -5 to -13% at 32, within the runs' noise) and adds the window to every lone request; it
# raised transformer_dcn's throughput by ~35% at 8 and 32 (26 → 35 requests/s) at equal p50 alone.
DEFAULT_BATCH_WINDOW_MS = 0.0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="serve a trained run over HTTP (rank; search with --index)",
        description="Serve a run directory over HTTP: POST /v1/rank ranks candidate items for one "
        "user's history, POST /v1/search searches a Track-1 index (with --index), GET /healthz and "
        "GET /metrics (Prometheus text) report on the service, POST /admin/reload (or SIGHUP) loads a "
        "run off the request path and swaps it in without failing a request. Requests are scored on "
        "model threads, never on the event loop. Ctrl+C / SIGTERM finish in-flight requests first.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", type=Path, required=True, help="run directory written by `mmctr train`")
    p.add_argument("--index", type=Path, help="Track-1 index (`mmctr retrieval index`) for /v1/search")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per model call")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="model threads: requests scored at the same time; 0: score on the event loop's own thread "
        "(no hop between threads: lower latency one request at a time, no overlap of parsing with scoring)",
    )
    p.add_argument("--max-candidates", type=int, default=1000, help="most candidates one request may rank")
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=4 << 20,
        help="largest request body (413 above it); room for a base64 page image in /v1/search",
    )
    p.add_argument(
        "--batch-window-ms",
        type=float,
        default=DEFAULT_BATCH_WINDOW_MS,
        help="micro-batching: merge the requests that queued while the model was busy, and those "
        "arriving within this many ms, into one forward of all their rows; 0 scores each request on "
        "its own path (user side once). Measured on 2 cores: ~2 ms raised transformer_dcn's "
        "throughput by a third at 8-32 concurrent requests and gave the DIN nothing",
    )
    p.add_argument("--batch-max-rows", type=int, default=4096, help="most candidate rows in one micro-batch")
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="weights of the serving copy; auto: bf16 where a timed bf16 matmul is at least as fast as fp32 (AMX CPUs)",
    )
    p.add_argument(
        "--max-history",
        type=int,
        help="keep each request's K most recent history items (bounds the slowest requests' cost)",
    )
    p.add_argument("--cache-dir", type=Path, help="embedding cache for --index (default $MMCTR_CACHE)")
    p.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    p.add_argument(
        "--graceful-timeout",
        type=int,
        default=30,
        help="seconds a shutdown waits for in-flight requests",
    )
    return p


def check_args(args: argparse.Namespace) -> None:
    from mmctr.errors import ConfigError, DataError

    for name, low in (("threads", 1), ("workers", 0), ("max_candidates", 1), ("max_body_bytes", 1024)):
        if getattr(args, name) < low:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: not a port (0..65535)")
    if args.batch_window_ms < 0 or args.batch_max_rows < 1:
        raise ConfigError("--batch-window-ms must be ≥ 0 and --batch-max-rows ≥ 1")
    if args.max_history is not None and args.max_history < 1:
        raise ConfigError("--max-history must be at least 1")
    if not args.run.is_dir():
        raise DataError(args.run, None, "--run: run directory not found; train one with `mmctr train`")
    if args.index is not None and not (args.index / "manifest.json").is_file():
        raise DataError(
            args.index,
            None,
            "--index: not an index directory (manifest.json missing); build one with `mmctr retrieval index`",
        )


def run(args: argparse.Namespace) -> int:
    import functools

    import torch

    from mmctr.errors import ConfigError, warn
    from mmctr.serve.loadtest import is_loopback

    check_args(args)
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise ConfigError("`mmctr serve` needs uvicorn and starlette: pip install 'mmctr[serve]'") from None
    from mmctr.serve.app import ServeSettings, create_app
    from mmctr.serve.ranker import Ranker, load_served

    if not is_loopback(args.host):
        warn(
            f"listening on {args.host}: /admin/reload has no authentication; keep the port off public networks"
        )
    torch.set_num_threads(args.threads)  # before warming up: oneDNN builds kernels per thread count
    loader = functools.partial(load_served, precision=args.precision, max_history=args.max_history)
    served = loader(args.run)
    index = None
    if args.index is not None:
        from mmctr.retrieval.index.store import DocumentIndex

        index = DocumentIndex.load(args.index, cache_dir=args.cache_dir)
        if index.live:
            index.search("warm up", k=1)  # loads the query encoder before the first request
    settings = ServeSettings(
        threads=args.threads,
        workers=args.workers,
        max_candidates=args.max_candidates,
        max_body_bytes=args.max_body_bytes,
        batch_window_ms=args.batch_window_ms,
        batch_max_rows=args.batch_max_rows,
    )
    app = create_app(Ranker(served, loader), settings, index)
    print(
        f"mmctr serve: {served.name} from {served.run} (weights {served.version}, {served.precision}, "
        f"{args.threads} torch thread(s) × {args.workers} model thread(s), micro-batching "
        + (f"{args.batch_window_ms:g} ms" if args.batch_window_ms > 0 else "off")
        + (f"; index {args.index}" if index is not None else "")
        + f") on http://{args.host}:{args.port}",
        flush=True,
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        timeout_graceful_shutdown=args.graceful_timeout,
        lifespan="on",
    )
    try:
        uvicorn.Server(config).run()
    finally:
        app.state.service.close()
    return 0
