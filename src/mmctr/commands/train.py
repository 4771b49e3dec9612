"""`mmctr train`: train a CTR model on a data root and write a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a CTR model and write a run directory")
    p.add_argument("--data", type=Path, required=True, help="data root (holds MicroLens_1M_x1/)")
    p.add_argument("--model", default="din", help="model name (see `mmctr models`); default din")
    p.add_argument("--config", type=Path, help="YAML overriding the model's defaults (model_params / train)")
    p.add_argument(
        "--item-info", type=Path, help="item_info parquet to use instead of the provided one (Task 1)"
    )
    p.add_argument("--seed", type=int, help="random seed (overrides the config)")
    p.add_argument("--epochs", type=int, help="maximum epochs (overrides the config)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (fast on AMX CPUs and GPUs)")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def overrides_from_args(args: argparse.Namespace) -> dict:
    train: dict = {}
    if args.seed is not None:
        train["seed"] = args.seed
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if getattr(args, "bf16", False):
        train["bf16"] = True
    return {"train": train} if train else {}


def run(args: argparse.Namespace) -> int:
    from mmctr.config import resolve_run_config
    from mmctr.data.reader import load_dataset
    from mmctr.training.loop import train_and_save

    cfg = resolve_run_config(args.model, args.config, overrides_from_args(args))
    data = load_dataset(
        args.data, max_len=cfg.train.max_len, splits=("train", "valid"), item_info=args.item_info
    )
    result = train_and_save(cfg, data, args.out, progress=not args.no_progress)
    m = result.metrics
    line = f"valid AUC {m['valid_auc']:.4f}  logloss {m['valid_logloss']:.4f}"
    if "oracle_valid_auc" in m:
        line += f"  (oracle {m['oracle_valid_auc']:.4f})"
    print(f"{line}\nrun written to {args.out}")
    return 0
