"""`mmctr predict`: score the test split with a trained run and write the submission zip."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="predict the test split and write the challenge's submission zip",
        description="Predict a click probability for every row of the data root's test split with a "
        "trained run and write the submission: a zip holding prediction.csv (header ID,<track>), or the "
        "bare csv when --out ends in .csv.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", type=Path, required=True, help="run directory written by `mmctr train`")
    p.add_argument("--data", type=Path, required=True, help="data root (holds MicroLens_1M_x1/test.parquet)")
    p.add_argument(
        "--track",
        default="Task2",
        choices=["Task1", "Task2", "Task1&2"],
        help="the challenge task the submission is for; names prediction.csv's second column",
    )
    p.add_argument("--out", type=Path, required=True, help="submission to write: FILE.zip (or FILE.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier submission")
    return p


def check_run_matches_data(run_dir: Path, facts: dict, data_root: Path) -> None:
    """Refuse a run trained on a data set with another item count; warn when the data root's
    item_info is not the one the run was trained with."""
    import pyarrow.parquet as pq

    from mmctr.data.reader import data_fingerprint
    from mmctr.data.schema import Layout
    from mmctr.errors import DataError, warn

    info = Layout(Path(data_root)).item_info
    if info.is_file():
        rows = pq.ParquetFile(info).metadata.num_rows
        if "n_items" in facts and rows != facts["n_items"]:
            raise DataError(
                info,
                None,
                f"has {rows:,} items but run {run_dir} was trained on {facts['n_items']:,} (data root "
                f"{facts.get('data_root')}): the run belongs to another data set",
            )
    theirs = facts.get("data_fingerprint")
    ours = data_fingerprint(data_root)
    if theirs and ours and theirs != ours:
        warn(
            f"{info} differs from the item_info run {run_dir} was trained with (data root "
            f"{facts.get('data_root')}); the predictions are only meaningful if the items are the same"
        )


def predict_test(run_dir: Path, data_root: Path):
    from mmctr.data.reader import check_data_root, read_split
    from mmctr.training.loop import predict_split
    from mmctr.training.run_dir import load_run

    layout = check_data_root(data_root)
    cfg, model, facts = load_run(run_dir)
    check_run_matches_data(Path(run_dir), facts, layout.root)
    test = read_split(layout.split("test"), facts["n_items"], cfg.train.max_len, "test")
    return predict_split(model, test, cfg.train.eval_batch_size, cfg.train.bf16)


def run(args: argparse.Namespace) -> int:
    from mmctr.submission import check_submission_out, write_submission

    check_submission_out(args.out, args.overwrite)
    pred = predict_test(args.run, args.data)
    write_submission(pred, args.out, args.track, overwrite=args.overwrite)
    inside = "prediction.csv, " if args.out.suffix.lower() == ".zip" else ""
    print(f"{len(pred):,} predictions written to {args.out} ({inside}header ID,{args.track})")
    return 0
