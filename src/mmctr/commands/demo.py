"""`mmctr demo`: the main job on the embedded default — synth small → train DIN → predict → score."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="generate synthetic data, train the baseline DIN, write and score a submission",
        description="The whole Track-2 pipeline on generated data: synth -> train -> predict -> score, "
        "printing the test AUC beside the oracle's. Data already generated in --out is reused; a rerun "
        "replaces the demo's own run and submission, and nothing else.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("demo_out"), help="working directory (default ./demo_out)"
    )
    p.add_argument(
        "--scale", default="small", choices=["tiny", "small", "full"], help="data size (default small)"
    )
    p.add_argument("--seed", type=int, default=0, help="data and training seed")
    p.add_argument("--model", default="din", help="model to train (see `mmctr models`; default din)")
    p.add_argument(
        "--epochs", type=int, default=2, help="maximum epochs (default 2, so the demo takes minutes)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=2048,
        help="batch size (default 2048: more steps per epoch than the baseline's 8192)",
    )
    p.add_argument(
        "--fp32",
        action="store_true",
        help="train in fp32 (default: bf16 autocast where this CPU runs bf16 matmul at least as fast as fp32)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.config import resolve_run_config
    from mmctr.data.reader import load_dataset
    from mmctr.data.schema import Layout
    from mmctr.data.synth import generate
    from mmctr.submission import oracle_test_auc, score, write_submission
    from mmctr.training.loop import bf16_is_fast, train_and_save

    from .predict import predict_test

    t_all = time.perf_counter()
    out: Path = args.out
    data_root = out / f"data_{args.scale}_seed{args.seed}"
    run_dir = out / f"run_{args.model}"
    zip_path = out / "submission_Task2.zip"

    check_demo_dir(out)
    print(f"[1/4] synth: MMCTR-format data, scale {args.scale}, seed {args.seed} → {data_root}")
    if (data_root / "truth" / "world.json").exists():
        print("      (already there; reusing it)")
    else:
        generate(data_root, scale=args.scale, seed=args.seed)

    print(f"[2/4] train: {args.model} → {run_dir}")
    bf16 = not args.fp32 and bf16_is_fast()
    if not args.fp32 and not bf16:
        print("      bf16 matmul is slower than fp32 on this CPU: training in fp32")
    train_over: dict = {
        "seed": args.seed,
        "bf16": bf16,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
    }
    cfg = resolve_run_config(args.model, None, {"train": train_over})
    data = load_dataset(data_root, max_len=cfg.train.max_len, splits=("train", "valid"))
    # The demo owns its directory: a rerun replaces its own run and zip (only if they are ones).
    result = train_and_save(cfg, data, run_dir, progress=not args.no_progress, overwrite=True)
    m = result.metrics

    print(f"[3/4] predict: test split → {zip_path}")
    pred = predict_test(run_dir, data_root)
    write_submission(pred, zip_path, "Task2", overwrite=True)

    print(f"[4/4] score: {zip_path} against {Layout(data_root).test_labels}")
    s = score(zip_path, Layout(data_root).test_labels)
    oracle_test = oracle_test_auc(Layout(data_root).test_labels)
    wall = time.perf_counter() - t_all
    summary = {
        "test_auc": s["auc"],
        "oracle_test_auc": oracle_test,
        "valid_auc": m["valid_auc"],
        "oracle_valid_auc": m.get("oracle_valid_auc"),
        "train_samples_per_s": m["train_samples_per_s"],
        "wall_seconds": wall,
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    from mmctr.report import write_report

    report = write_report(
        [run_dir, data_root / "MicroLens_1M_x1" / "item_info.parquet"],
        out / "report.html",
        title=f"mmctr demo: {args.model} on {data_root.name}",
        overwrite=True,
    )
    print()
    print(
        f"  valid AUC {m['valid_auc']:.4f}   oracle valid AUC {m.get('oracle_valid_auc', float('nan')):.4f}"
    )
    print(
        f"  test  AUC {s['auc']:.4f}   oracle test  AUC {oracle_test:.4f}   (gap {oracle_test - s['auc']:.4f})"
    )
    print(
        f"  trained at {m['train_samples_per_s']:,.0f} samples/s; demo took {wall:.0f} s; summary in {out / 'demo_summary.json'}"
    )
    print(f"  report: {report} (open it in a browser)")
    return 0


def check_demo_dir(out: Path) -> None:
    """The demo writes only into a directory that is new, empty, or an earlier demo's; it never
    mixes its files into (or replaces) anything else."""
    from mmctr.outputs import OutputError

    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory; choose another --out for the demo")
    own = ("data_", "run_", "submission_Task2.zip", "demo_summary.json", "report.html", ".")
    other = sorted(p.name for p in out.iterdir() if not p.name.startswith(own))
    if other:
        raise OutputError(
            f"{out}: holds files the demo did not write ({', '.join(other[:5])}); choose another --out"
        )
