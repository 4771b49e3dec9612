"""`mmctr retrieval train`: the two-tower retriever trained on the generator's train split(s)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_train(rsub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    from mmctr.retrieval.trained.train import TrainConfig

    d = TrainConfig()
    p = rsub.add_parser(
        "train",
        help="train the two-tower retriever (one model for both tasks) on DATA/train",
        description="Train the unified two-tower retriever over the frozen encoders (MiniLM text, "
        "EfficientNet-Lite0 region features of screenshots, BM25 term weights) on the train split of "
        "one or more data roots: InfoNCE over the gold against hard negatives mined by the untrained "
        "retrievers and in-batch negatives. Writes a run directory that `predict --run`, "
        "`score --run`, `index --run` and hybrid_trained read.",
        formatter_class=fmt,
    )
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="data root with a train/ split (repeatable: the splits are pooled)",
    )
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument(
        "--epochs", type=int, default=d.epochs, help="most epochs (early stopping on the held-out share)"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="questions per step")
    p.add_argument(
        "--lr",
        type=float,
        default=d.lr,
        help="AdamW learning rate of the field weights (the projections: a tenth of it)",
    )
    p.add_argument(
        "--hard-negatives",
        type=int,
        default=d.hard_negatives,
        help="M2KR: wrong passages mined per untrained retriever (image MaxSim, BM25) per question",
    )
    p.add_argument(
        "--valid-share",
        type=float,
        default=d.valid_share,
        help="share of train questions held out for model selection",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="epochs without a better held-out score before stopping",
    )
    p.add_argument(
        "--seed", type=int, default=d.seed, help="seed of the split, the order and the initial weights"
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="embedding cache (default: $MMCTR_CACHE or ~/.cache/mmctr)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier run of this command"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--nproc",
        type=int,
        help="train on this many processes (runs torchrun for you; each takes a share of every batch)",
    )
    p.add_argument("--nnodes", type=int, default=1, help="with --nproc: machines in the job")
    p.add_argument(
        "--rdzv-endpoint", help="with --nnodes > 1: HOST:PORT of the rendezvous, the same on every node"
    )
    p.set_defaults(_retrieval_run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import os

    from mmctr.outputs import check_out
    from mmctr.retrieval.retrievers.base import RetrieverOptions
    from mmctr.retrieval.trained.train import RUN_KIND, TrainConfig, train_run
    from mmctr.training.distributed import argv_without_launch, finish, init_world, launch

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        hard_negatives=args.hard_negatives,
        valid_share=args.valid_share,
        patience=args.patience,
        seed=args.seed,
    )
    if args.nproc is not None and "WORLD_SIZE" not in os.environ:
        check_out(args.out, RUN_KIND, args.overwrite)  # refused before the processes start
        return launch(args.nproc, argv_without_launch(args._argv), args.nnodes, args.rdzv_endpoint)
    world = init_world()
    options = RetrieverOptions(cache_dir=args.cache_dir, progress=not args.no_progress and world.main)
    try:
        m = train_run(
            args.data,
            args.out,
            options,
            config,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            world=world,
        )
    finally:
        finish(world)
    if not world.main:
        return 0
    h0, h1 = m["held_out_untrained"], m["held_out_best"]
    print(
        f"trained in {m['train_seconds']:.1f} s (features {m['feature_seconds']:.1f} s), best epoch {m['best_epoch']}; "
        f"held-out score {h0['overall']:.3f} untrained -> {h1:.3f} trained"
    )
    print(
        f"wrote {args.out}: use it with `mmctr retrieval predict --data DATA --run {args.out} --out sub.csv`"
    )
    return 0
