"""`mmctr distill`: train a cheap student on the labels plus a trained teacher's logits."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "distill",
        help="train a cheap student CTR model on the labels plus a trained teacher's logits",
        description="Knowledge distillation (Task 2): train --student (a model name, configured by "
        "--config) on the train split with the label loss plus weight · T² · BCE(σ(s/T), σ(t/T)) "
        "against the teacher's logits t. The teacher is a trained run, or several (their mean "
        "logit). Writes an ordinary run directory; run.json records the teacher(s), their sha256, "
        "the temperature and the weight.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--teacher", type=Path, nargs="+", required=True, help="trained run(s) to learn from")
    p.add_argument("--student", default="din", help="the student's model name (see `mmctr models`)")
    p.add_argument(
        "--config", type=Path, help="YAML overriding the student's defaults (model_params / train)"
    )
    p.add_argument("--data", type=Path, help="data root (default: the first teacher's)")
    p.add_argument("--item-info", type=Path, help="item_info parquet instead of the provided one")
    p.add_argument("--temperature", type=float, default=1.0, help="T of the teacher term")
    p.add_argument("--weight", type=float, default=1.0, help="weight of the teacher term (labels: 1)")
    p.add_argument("--seed", type=int, help="random seed (overrides the config)")
    p.add_argument("--epochs", type=int, help="maximum epochs (overrides the config)")
    p.add_argument("--batch-size", type=int, help="training batch size (overrides the config)")
    p.add_argument("--threads", type=int, help="training threads (overrides the config)")
    p.add_argument("--out", type=Path, required=True, help="run directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def train_overrides(args: argparse.Namespace) -> dict:
    train = {
        k: getattr(args, k)
        for k in ("seed", "epochs", "batch_size", "threads")
        if getattr(args, k) is not None
    }
    return {"train": train} if train else {}


def run(args: argparse.Namespace) -> int:
    import json

    from mmctr.compress import run_data
    from mmctr.compress.distill import DistillConfig, distill
    from mmctr.config import resolve_run_config
    from mmctr.data.reader import load_dataset
    from mmctr.errors import MMCTRError
    from mmctr.outputs import RUN_DIR, check_out
    from mmctr.training.run_dir import data_facts, save_run

    check_out(args.out, RUN_DIR, args.overwrite)
    dcfg = DistillConfig(temperature=args.temperature, weight=args.weight)
    first = Path(args.teacher[0])
    if not (first / "run.json").exists():
        raise MMCTRError(
            f"--teacher {first}: not a run directory (run.json missing); train one with `mmctr train`"
        )
    root = run_data(json.loads((first / "run.json").read_text()), args.data, f"--teacher {first}")
    cfg = resolve_run_config(args.student, args.config, train_overrides(args))
    data = load_dataset(root, max_len=cfg.train.max_len, splits=("train", "valid"), item_info=args.item_info)
    result, facts = distill(cfg, data, args.teacher, dcfg, progress=not args.no_progress)
    m = result.metrics
    save_run(
        args.out,
        cfg,
        result.model,
        data.items,
        dict(m, history=result.history),
        {**data_facts(data), "compress": {"distill": facts}},
        overwrite=args.overwrite,
    )
    teachers = ", ".join(f"{t['valid_auc']:.4f}" for t in facts["teachers"] if t["valid_auc"] is not None)
    print(
        f"student valid AUC {m['valid_auc']:.4f} (teacher {teachers or 'unknown'})\nrun written to {args.out}"
    )
    return 0
