"""`mmctr loadtest`: throughput and latency of a running `mmctr serve` under fixed concurrencies."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "loadtest",
        help="load-test a running `mmctr serve` on this machine",
        description="Send /v1/rank requests built from a data root's valid split (each row's history "
        "and target plus random other candidates) to a server on this machine, with each number of "
        "concurrent connections in turn, for --duration seconds or --requests requests each, "
        "whichever ends first. Prints requests/s, p50/p90/p99 and errors per concurrency and writes "
        "OUT/loadtest.json and OUT/loadtest.png (latency against throughput).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--url", required=True, help="the server, http://127.0.0.1:PORT (loopback only)")
    p.add_argument("--data", type=Path, required=True, help="data root the served run was trained on")
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 8, 32],
        help="concurrent connections, one level each",
    )
    p.add_argument("--duration", type=float, default=30.0, help="seconds per concurrency level")
    p.add_argument("--requests", type=int, default=100_000, help="most requests per concurrency level")
    p.add_argument("--candidates", type=int, default=100, help="candidates per request")
    p.add_argument("--warmup", type=int, default=20, help="requests sent before the first level, untimed")
    p.add_argument("--seed", type=int, default=2025, help="seed of the requests drawn")
    p.add_argument("--label", help="a name for this test in the JSON and the plot")
    p.add_argument("--out", type=Path, help="directory for loadtest.json and loadtest.png")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier load test")
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.errors import ConfigError
    from mmctr.serve.loadtest import LOADTEST_DIR, run_loadtest, write_outputs

    if args.out is not None:
        from mmctr.outputs import check_out

        check_out(args.out, LOADTEST_DIR, args.overwrite)  # before the test, not after
    if args.warmup < 0:
        raise ConfigError("--warmup must be ≥ 0")
    result = run_loadtest(
        args.url,
        args.data,
        args.concurrency,
        args.duration,
        args.requests,
        args.candidates,
        seed=args.seed,
        warmup=args.warmup,
        label=args.label,
    )
    if args.out is not None:
        write_outputs(result, args.out, args.overwrite)
        print(f"written to {args.out}/loadtest.json and loadtest.png")
    return 1 if any(level["errors"] for level in result["levels"]) else 0
