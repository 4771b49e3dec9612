"""`mmctr bench`: efficiency of mmctr's models and of peer libraries on the same data, one
subprocess per system; writes bench.json, bench.md and auc_latency.png."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from mmctr.bench.spec import PEERS

    p = sub.add_parser(
        "bench",
        help="measure train speed, request latency, memory and AUC of our models and peers",
        description=(
            "Each system runs in its own subprocess. Systems: mmctr/<model>[@bf16|@fp32] for our "
            "models, and peers (deepctr-torch, fuxictr) on the same arrays and hyperparameters; a peer "
            "that is not installed is skipped."
        ),
    )
    p.add_argument("--data", type=Path, required=True, help="data root (holds MicroLens_1M_x1/)")
    p.add_argument(
        "--out", type=Path, required=True, help="directory for bench.json, bench.md, auc_latency.png"
    )
    p.add_argument(
        "--models",
        nargs="*",
        help="our models, each NAME or NAME@bf16 / NAME@fp32 (default: every registered model, as configured)",
    )
    p.add_argument(
        "--peers",
        nargs="*",
        default=list(PEERS),
        choices=list(PEERS),
        help=f"peer libraries to measure (default: {' '.join(PEERS)}; `--peers` alone: none)",
    )
    p.add_argument(
        "--epochs", type=int, default=1, help="training budget for valid AUC, every system (default 1)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier `mmctr bench` output"
    )
    p.add_argument(
        "--warmup-steps", type=int, default=3, help="training steps run before the timed ones (default 3)"
    )
    p.add_argument("--timed-steps", type=int, default=10, help="training steps timed after warm-up (median)")
    p.add_argument("--candidates", type=int, default=100, help="candidates per request (default 100)")
    p.add_argument("--requests", type=int, default=300, help="timed requests (default 300)")
    p.add_argument(
        "--warmup-requests", type=int, default=20, help="requests run before the timed ones (default 20)"
    )
    p.add_argument(
        "--batch-size", type=int, help="training batch size for every system (default: our DIN config's)"
    )
    p.add_argument("--eval-batch-size", type=int, default=8192, help="batch for scoring the valid split")
    p.add_argument("--threads", type=int, default=0, help="training/batch threads (default: torch's default)")
    p.add_argument("--seed", type=int, default=2025, help="training seed of every system (default 2025)")
    p.add_argument(
        "--max-train-rows", type=int, default=0, help="use only the first rows of train (quick runs)"
    )
    p.add_argument("--repeats", type=int, default=1, help="processes per system; timings are their medians")
    p.add_argument("--matmul-n", type=int, default=2048, help="matrix side for the machine's matmul rate")
    p.add_argument("--timeout", type=float, help="seconds after which one system's process is killed")
    p.add_argument(
        "--max-load",
        type=float,
        default=0.0,
        help="before each process, wait until the 1-min load average is below this (0: do not wait)",
    )
    p.add_argument("--max-wait", type=float, default=1800.0, help="longest wait for --max-load, seconds")
    p.add_argument("--deepctr-python", help="interpreter with deepctr-torch (env MMCTR_DEEPCTR_PYTHON)")
    p.add_argument(
        "--fuxictr-python",
        help="interpreter with fuxictr and polars<2 (env MMCTR_FUXICTR_PYTHON; default: this one, then ./.venv-fuxictr)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from mmctr.bench.harness import din_hparams, run_bench
    from mmctr.bench.spec import BenchSettings
    from mmctr.errors import ConfigError
    from mmctr.outputs import BENCH_DIR, check_out

    for name in ("epochs", "timed_steps", "candidates", "requests", "repeats"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    hp = din_hparams()
    if args.batch_size:
        hp = dataclasses.replace(hp, batch_size=args.batch_size)
    check_out(args.out, BENCH_DIR, args.overwrite)  # before measuring for minutes
    settings = BenchSettings(
        data=str(args.data),
        hparams=hp,
        epochs=args.epochs,
        warmup_steps=args.warmup_steps,
        timed_steps=args.timed_steps,
        candidates=args.candidates,
        requests=args.requests,
        warmup_requests=args.warmup_requests,
        eval_batch_size=args.eval_batch_size,
        seed=args.seed,
        threads=args.threads,
        max_train_rows=args.max_train_rows,
    )
    records = run_bench(
        settings,
        args.out,
        models=args.models,
        peers=args.peers,
        repeats=args.repeats,
        pythons={"deepctr-torch": args.deepctr_python, "fuxictr": args.fuxictr_python},
        matmul_n=args.matmul_n,
        timeout=args.timeout,
        max_load=args.max_load,
        max_wait=args.max_wait,
        command="mmctr " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        overwrite=args.overwrite,
    )
    print((args.out / "bench.md").read_text())
    return 0 if records else 1
