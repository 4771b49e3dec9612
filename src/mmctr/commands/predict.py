"""`mmctr predict`: score the test split with a trained run and write the submission zip."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="predict the test split and write the challenge's submission zip")
    p.add_argument("--run", type=Path, required=True, help="run directory written by `mmctr train`")
    p.add_argument("--data", type=Path, required=True, help="data root (holds MicroLens_1M_x1/test.parquet)")
    p.add_argument("--track", default="Task2", choices=["Task1", "Task2", "Task1&2"])
    p.add_argument("--out", type=Path, required=True, help="zip to write (prediction.csv inside)")
    return p


def predict_test(run_dir: Path, data_root: Path):
    from mmctr.data.reader import read_split
    from mmctr.data.schema import Layout
    from mmctr.training.loop import predict_split
    from mmctr.training.run_dir import load_run

    cfg, model, facts = load_run(run_dir)
    test = read_split(Layout(Path(data_root)).split("test"), facts["n_items"], cfg.train.max_len, "test")
    return predict_split(model, test, cfg.train.eval_batch_size, cfg.train.bf16)


def run(args: argparse.Namespace) -> int:
    from mmctr.submission import write_submission

    pred = predict_test(args.run, args.data)
    write_submission(pred, args.out, args.track)
    print(f"{len(pred):,} predictions written to {args.out} (prediction.csv, header ID,{args.track})")
    return 0
