"""`mmctr retrieval distill`: a single-vector student of the late-interaction retriever, trained on
the generator's train split."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_distill(rsub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    from mmctr.retrieval.trained.distill import TEACHERS, DistillConfig

    d = DistillConfig()
    p = rsub.add_parser(
        "distill",
        help="distil the late-interaction retriever into one vector per page / passage, on DATA/train",
        description="Train a single-vector student to rank as a late-interaction teacher (MaxSim over "
        "MiniLM token vectors) does: attention pooling of the frozen token vectors plus low-rank "
        "projections, KL divergence to the teacher's softmax over each question's candidates "
        "(MMDocIR: its document's pages; M2KR: the teacher's best passages plus random ones). "
        "Writes a run directory that `--retriever distilled --run RUN` reads (predict, score, "
        "bench --track1).",
        formatter_class=fmt,
    )
    p.add_argument("--data", type=Path, required=True, help="data root with a train/ split")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument(
        "--teacher", default=d.teacher, choices=TEACHERS, help="the late-interaction retriever to copy"
    )
    p.add_argument(
        "--epochs", type=int, default=d.epochs, help="most epochs (early stopping on the held-out KL)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=d.temperature,
        help="the teacher's softmax temperature per query token: logits = MaxSim / (tokens x T)",
    )
    p.add_argument(
        "--weight",
        type=float,
        default=d.weight,
        help="weight of the label InfoNCE beside the KL (0: the teacher alone, no labels used)",
    )
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="questions per step")
    p.add_argument("--rank", type=int, default=d.rank, help="rank of the projections' residual")
    p.add_argument(
        "--valid-share",
        type=float,
        default=d.valid_share,
        help="share of questions held out for early stopping",
    )
    p.add_argument(
        "--patience", type=int, default=d.patience, help="epochs without a lower held-out KL before stopping"
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the split, the order and the draws")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="token-vector cache (default: $MMCTR_CACHE or ~/.cache/mmctr)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier run of this command"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(_retrieval_run=_run_distill)


def _run_distill(args: argparse.Namespace) -> int:
    from mmctr.retrieval.retrievers import build_retriever
    from mmctr.retrieval.retrievers.base import RetrieverOptions
    from mmctr.retrieval.trained.distill import DistillConfig, distill_run

    config = DistillConfig(
        teacher=args.teacher,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        temperature=args.temperature,
        weight=args.weight,
        rank=args.rank,
        valid_share=args.valid_share,
        patience=args.patience,
        seed=args.seed,
    )
    options = RetrieverOptions(cache_dir=args.cache_dir, progress=not args.no_progress)
    teacher = build_retriever(config.teacher, options)
    m = distill_run(
        args.data, args.out, teacher, config, overwrite=args.overwrite, progress=not args.no_progress
    )
    h0, h1 = m["held_out_untrained"], m["held_out_best"]
    print(
        f"distilled in {m['train_seconds']:.1f} s (teacher {m['teacher_seconds']:.1f} s), best epoch "
        f"{m['best_epoch']}; held-out KL to the teacher {h0['kl']:.3f} -> {h1['kl']:.3f}, top-5 agreement "
        f"{h0['agreement']:.3f} -> {h1['agreement']:.3f}"
    )
    print(
        f"wrote {args.out}: score it with `mmctr retrieval score --data DATA --run {args.out} --retriever distilled`"
    )
    return 0
