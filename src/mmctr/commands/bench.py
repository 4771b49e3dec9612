"""`mmctr bench`: efficiency of mmctr's models and of peer libraries on the same data, one
subprocess per system; writes bench.json, bench.md and auc_latency.png.

`mmctr bench --track1`: Track 1's efficiency-effectiveness table instead: every retriever and every
index kind on a Track-1 data root (mmctr.bench.retrieval); writes retrieval_bench.json,
retrieval_bench.md and retrieval_pareto.png.

`mmctr bench --serving RUN ...`: the serving numbers of trained runs (mmctr.bench.serving); writes
serving_bench.json, serving_bench.md and, with --http, serving_load.png."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

TRACK1 = "Track 1 (with --track1)"
TRACK2 = "Track 2 (without --track1)"
SERVING = "Serving (with --serving RUN ...)"
# Track 2 options that --serving uses too (the requests); the other Track 2 options train systems
SHARED_WITH_SERVING = ("--candidates", "--requests", "--warmup-requests", "--seed")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from mmctr.bench.spec import DEFAULT_SERVING_OPTIONS as DEFAULT_OPTIONS
    from mmctr.bench.spec import PEERS
    from mmctr.bench.spec import SERVING_OPTIONS as OPTIONS

    p = sub.add_parser(
        "bench",
        help="measure train speed, request latency, memory and AUC of our models and peers "
        "(--track1: score, size and latency of the Track-1 retrievers and index kinds)",
        description=(
            "Track 2 (default): each system runs in its own subprocess. Systems: mmctr/<model>[@bf16|@fp32] "
            "for our models, and peers (deepctr-torch, fuxictr) on the same arrays and hyperparameters; a "
            "peer that is not installed is skipped. Track 1 (--track1): every retriever and every vector "
            "kind of the persistent index on a Track-1 data root: overall and per-task score, index bytes "
            "per page/passage, items indexed per second, query p50/p99 (encode + search) on --threads "
            "threads (default 1), training minutes; a Pareto plot of score against query latency. Serving "
            "(--serving RUN ...): the serving copies of trained runs side by side, and with --http the "
            "service under load. An option of another mode is refused, not ignored."
        ),
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="data root: holds MicroLens_1M_x1/ (Track 2), or a Track-1 root with an answer key "
        "(`mmctr retrieval synth` output, or real files) with --track1",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="directory for bench.json, bench.md, auc_latency.png (--track1: retrieval_bench.json, "
        "retrieval_bench.md, retrieval_pareto.png)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier output of the same mode"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="Track 2: continue a killed bench (its OUT.partial/) with the same arguments, measuring only "
        "the systems it had not finished",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="Track 2: training/batch threads (default: torch's default); Track 1: threads of the whole "
        "run, indexing and queries (default 1: latencies of one thread; 0: torch's default)",
    )
    t1 = p.add_argument_group(TRACK1)
    t1.add_argument(
        "--track1", action="store_true", help="benchmark Track 1 (retrieval) instead of Track 2 (CTR)"
    )
    t1.add_argument(
        "--retrievers",
        nargs="+",
        help="retrievers to measure (default: every registered one; `trained` only with --run)",
    )
    t1.add_argument(
        "--index-kinds",
        nargs="*",
        help="index kinds (flat hnsw ivfpq int8 binary) measured on the dense retriever's vectors "
        "(default: all; `--index-kinds` alone: none)",
    )
    t1.add_argument("--rules", help="rule set: final (default) or draft")
    t1.add_argument("--truth", type=Path, help="answer key directory (default: --data)")
    t1.add_argument(
        "--cache-dir",
        type=Path,
        help="reuse this embedding cache (warm timings; default: a fresh one, cold timings)",
    )
    t1.add_argument(
        "--option",
        action="append",
        metavar="KEY=JSON",
        help="a RetrieverOptions field, e.g. --option match_candidates=20 --option doc_text='\"ocr\"'",
    )
    t1.add_argument(
        "--run",
        type=Path,
        help="a trained Track-1 run directory (`mmctr retrieval train`): the trained retriever reads it, "
        "its train_seconds (metrics.json) is the training time",
    )
    t2 = p.add_argument_group(TRACK2)
    t2.add_argument(
        "--models",
        nargs="*",
        help="our models, each NAME or NAME@bf16 / NAME@fp32 (default: every registered model, as configured)",
    )
    t2.add_argument(
        "--peers",
        nargs="*",
        default=list(PEERS),
        choices=list(PEERS),
        help=f"peer libraries to measure (default: {' '.join(PEERS)}; `--peers` alone: none)",
    )
    t2.add_argument(
        "--epochs", type=int, default=1, help="training budget for valid AUC, every system (default 1)"
    )
    t2.add_argument(
        "--warmup-steps", type=int, default=3, help="training steps run before the timed ones (default 3)"
    )
    t2.add_argument("--timed-steps", type=int, default=10, help="training steps timed after warm-up (median)")
    t2.add_argument("--candidates", type=int, default=100, help="candidates per request (default 100)")
    t2.add_argument("--requests", type=int, default=300, help="timed requests (default 300)")
    t2.add_argument(
        "--warmup-requests", type=int, default=20, help="requests run before the timed ones (default 20)"
    )
    t2.add_argument(
        "--batch-size", type=int, help="training batch size for every system (default: our DIN config's)"
    )
    t2.add_argument("--eval-batch-size", type=int, default=8192, help="batch for scoring the valid split")
    t2.add_argument("--seed", type=int, default=2025, help="training seed of every system (default 2025)")
    t2.add_argument(
        "--max-train-rows", type=int, default=0, help="use only the first rows of train (quick runs)"
    )
    t2.add_argument("--repeats", type=int, default=1, help="processes per system; timings are their medians")
    t2.add_argument("--matmul-n", type=int, default=2048, help="matrix side for the machine's matmul rate")
    t2.add_argument("--timeout", type=float, help="seconds after which one system's process is killed")
    t2.add_argument(
        "--max-load",
        type=float,
        default=0.0,
        help="before each process, wait until the 1-min load average is below this (0: do not wait)",
    )
    t2.add_argument("--max-wait", type=float, default=1800.0, help="longest wait for --max-load, seconds")
    t2.add_argument("--deepctr-python", help="interpreter with deepctr-torch (env MMCTR_DEEPCTR_PYTHON)")
    t2.add_argument(
        "--fuxictr-python",
        help="interpreter with fuxictr and polars<2 (env MMCTR_FUXICTR_PYTHON; default: this one, then ./.venv-fuxictr)",
    )
    sv = p.add_argument_group(SERVING)
    sv.add_argument(
        "--serving",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="trained Task-2 run directories: measure their serving options (valid AUC, request p50/p99 "
        "on 1 thread, achieved GFLOP/s beside the machine's matmul rate) instead of training systems; "
        "writes serving_bench.json/.md",
    )
    sv.add_argument(
        "--serving-options",
        nargs="+",
        choices=list(OPTIONS),
        help=f"serving copies to compare (default: {' '.join(DEFAULT_OPTIONS)}, and bf16 where this CPU "
        "runs bf16 matmuls at least as fast as fp32, timed at start (AMX); the ort ones need a DIN and the `ort` extra)",
    )
    sv.add_argument(
        "--max-history",
        type=int,
        nargs="*",
        default=[16],
        metavar="K",
        help="also the fp32 copy served from the K most recent history items, its AUC on the valid split "
        "cut the same way (default: 16; `--max-history` alone: none)",
    )
    sv.add_argument(
        "--http",
        action="store_true",
        help="also start `mmctr serve` for each run on 127.0.0.1 and load-test it: requests/s, HTTP "
        "p50/p99 beside in-process, the HTTP overhead at concurrency 1; writes serving_load.png",
    )
    sv.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="with --http: load levels")
    sv.add_argument(
        "--duration", type=float, default=12.0, help="with --http: seconds per load level (default 12)"
    )
    sv.add_argument(
        "--windows",
        type=float,
        nargs="+",
        default=[0.0],
        metavar="MS",
        help="with --http: micro-batching windows to serve with (`mmctr serve --batch-window-ms`; default 0)",
    )
    sv.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        metavar="W",
        help="with --http: `mmctr serve --workers` values to serve with (0: on the event loop; default 1)",
    )
    return p


def _given(args: argparse.Namespace, title: str) -> list[str]:
    """The options of one track's group that the command line changed from their defaults, so an
    option of the other track is refused rather than silently ignored."""
    fresh = add_parser(argparse.ArgumentParser().add_subparsers())
    group = next(g for g in fresh._action_groups if g.title == title)
    return [
        a.option_strings[0]
        for a in group._group_actions
        if a.dest not in ("track1", "serving") and getattr(args, a.dest) != a.default
    ]


def run_serving(args: argparse.Namespace) -> int:
    from mmctr.bench.serving import ServingBenchSettings, render, run_serving_bench
    from mmctr.errors import ConfigError

    other = _given(args, TRACK1) + [o for o in _given(args, TRACK2) if o not in SHARED_WITH_SERVING]
    if args.track1 or args.resume or args.threads is not None:
        other = (
            ["--track1"] * args.track1
            + ["--resume"] * args.resume
            + ["--threads"] * (args.threads is not None)
            + other
        )
    if other:
        raise ConfigError(
            f"{', '.join(other)}: not an option of `mmctr bench --serving` (it measures trained runs on 1 "
            "thread); leave them out"
        )
    settings = ServingBenchSettings(
        runs=list(args.serving),
        data=args.data,
        out=args.out,
        options=args.serving_options,
        max_history=list(args.max_history),
        requests=args.requests,
        warmup=args.warmup_requests,
        candidates=args.candidates,
        seed=args.seed,
        http=args.http,
        concurrency=list(args.concurrency),
        duration=args.duration,
        windows=list(args.windows),
        workers=list(args.workers),
        overwrite=args.overwrite,
        command="mmctr " + " ".join(shlex.quote(a) for a in args._argv),
    )
    print(render(run_serving_bench(settings)))
    print(f"written to {args.out}/serving_bench.json and serving_bench.md")
    return 0


def run_track1(args: argparse.Namespace) -> int:
    from mmctr.bench.retrieval import Track1BenchSettings, parse_options, render, run_track1_bench

    settings = Track1BenchSettings(
        data=args.data,
        out=args.out,
        retrievers=args.retrievers,
        index_kinds=args.index_kinds,
        rules=args.rules or "final",
        truth=args.truth,
        cache_dir=args.cache_dir,
        options=parse_options(args.option or []),
        run=args.run,
        threads=1 if args.threads is None else args.threads,
        overwrite=args.overwrite,
        command="mmctr " + " ".join(shlex.quote(a) for a in args._argv),
    )
    print(render(run_track1_bench(settings)))
    return 0


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from mmctr.errors import ConfigError

    if args.serving:
        return run_serving(args)
    serving = _given(args, SERVING)
    if serving:
        raise ConfigError(
            f"{', '.join(serving)}: option(s) of `mmctr bench --serving RUN ...`; add it or leave them out"
        )
    other = _given(args, TRACK2 if args.track1 else TRACK1)
    if other:
        track, flag = ("Track 2", "drop --track1") if args.track1 else ("Track 1", "add --track1")
        raise ConfigError(f"{', '.join(other)}: {track} option(s); {flag} or leave them out")
    if args.track1:
        if args.resume:
            raise ConfigError("--resume: Track 2 benches only; rerun the Track-1 bench with --overwrite")
        return run_track1(args)

    from mmctr.bench.harness import din_hparams, run_bench
    from mmctr.bench.spec import BenchSettings
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
        threads=args.threads or 0,
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
        command="mmctr " + " ".join(shlex.quote(a) for a in args._argv),
        overwrite=args.overwrite,
        resume=args.resume,
    )
    print((args.out / "bench.md").read_text())
    return 0 if records else 1
