"""`mmctr train`: train a CTR model on a data root and write a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a CTR model and write a run directory",
        description="Train a CTR model (see `mmctr models`) on the train split of a data root, select "
        "the best epoch on valid AUC, and write a run directory (config, weights, metrics). The "
        "organisers' configuration is the default; --config, --batch-size, --epochs, --seed override it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", type=Path, required=True, help="data root (holds MicroLens_1M_x1/)")
    p.add_argument("--model", default="din", help="model name (see `mmctr models`)")
    p.add_argument("--config", type=Path, help="YAML overriding the model's defaults (model_params / train)")
    p.add_argument(
        "--item-info", type=Path, help="item_info parquet to use instead of the provided one (Task 1)"
    )
    p.add_argument(
        "--seed", type=int, help="random seed for initialisation and shuffling (overrides the config)"
    )
    p.add_argument("--epochs", type=int, help="maximum epochs (overrides the config)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="training batch size (overrides the config's 8192; small data needs a smaller one)",
    )
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (fast on AMX CPUs and GPUs)")
    p.add_argument("--out", type=Path, required=True, help="run directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def overrides_from_args(args: argparse.Namespace) -> dict:
    train: dict = {}
    for name in ("seed", "epochs", "batch_size"):
        if getattr(args, name, None) is not None:
            train[name] = getattr(args, name)
    if getattr(args, "bf16", False):
        train["bf16"] = True
    return {"train": train} if train else {}


def run(args: argparse.Namespace) -> int:
    from mmctr.config import resolve_run_config
    from mmctr.data.reader import load_dataset
    from mmctr.errors import ConfigError
    from mmctr.outputs import RUN_DIR, check_out
    from mmctr.training.loop import train_and_save

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    check_out(args.out, RUN_DIR, args.overwrite)  # before minutes of training, not after
    cfg = resolve_run_config(args.model, args.config, overrides_from_args(args))
    data = load_dataset(
        args.data, max_len=cfg.train.max_len, splits=("train", "valid"), item_info=args.item_info
    )
    result = train_and_save(cfg, data, args.out, progress=not args.no_progress, overwrite=args.overwrite)
    m = result.metrics
    line = f"valid AUC {m['valid_auc']:.4f}  logloss {m['valid_logloss']:.4f}"
    if "oracle_valid_auc" in m:
        line += f"  (oracle {m['oracle_valid_auc']:.4f})"
    print(f"{line}\nrun written to {args.out}")
    return 0
