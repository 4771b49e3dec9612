"""`mmctr prune`: remove hidden units of a trained run's MLPs and fine-tune; or ablate modalities."""

from __future__ import annotations

import argparse
from pathlib import Path


def _keep(text: str) -> tuple[str, float]:
    group, eq, share = text.partition("=")
    try:
        return group.strip(), float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--keep {text!r}: expected GROUP=SHARE, e.g. dnn=0.5") from None


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "prune",
        help="structured pruning of a trained run's MLPs (with fine-tuning), or modality ablation",
        description="Structured pruning: each hidden layer of the named groups (din: dnn, attention; "
        "transformer_dcn: dnn, head) keeps the given share of its units, those with the largest "
        "weight magnitude along the path through them; the narrower model is fine-tuned and written "
        "as an ordinary run directory (its config lists the new widths). --cross-rank R instead replaces "
        "each cross layer's weight of a transformer_dcn or sasrec_dcn by its best rank-R factorisation "
        "(truncated SVD), then fine-tunes the same way. --modalities instead "
        "reports the valid AUC of the run with each of id, tags, embedding, levels removed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", type=Path, required=True, help="the trained run to prune")
    p.add_argument(
        "--keep", type=_keep, action="append", default=[], metavar="GROUP=SHARE", help="e.g. dnn=0.5"
    )
    p.add_argument(
        "--cross-rank",
        type=int,
        metavar="R",
        help="low-rank cross layers: each dim × dim weight becomes two rank-R factors (transformer_dcn, sasrec_dcn)",
    )
    p.add_argument("--finetune-epochs", type=int, default=1, help="fine-tuning epochs after pruning")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the run's lr / 10)")
    p.add_argument("--modalities", action="store_true", help="report the modality ablation; write nothing")
    p.add_argument("--data", type=Path, help="data root (default: the run's)")
    p.add_argument("--seed", type=int, help="fine-tuning seed (default: the run's)")
    p.add_argument("--batch-size", type=int, help="fine-tuning batch size (default: the run's)")
    p.add_argument("--threads", type=int, help="threads (default: the run's)")
    p.add_argument("--out", type=Path, help="run directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.compress import load_source, save_derived
    from mmctr.compress.prune import modality_ablation, prune_cross_rank, prune_units
    from mmctr.errors import ConfigError
    from mmctr.outputs import RUN_DIR, check_out
    from mmctr.training.loop import train

    if args.modalities:
        src = load_source(args.run, args.data, splits=("valid",))
        res = modality_ablation(src.model, src.data["valid"])
        print("removed    valid AUC   Δ")
        for k, v in res.items():
            print(f"{k:<10} {v:.4f}     {v - res['all']:+.4f}")
        return 0
    if args.out is None or not (args.keep or args.cross_rank):
        raise ConfigError(
            "prune: give --keep GROUP=SHARE (e.g. --keep dnn=0.5) or --cross-rank R, and --out; or --modalities"
        )
    if args.finetune_epochs < 0:
        raise ConfigError("--finetune-epochs must be 0 or more")
    check_out(args.out, RUN_DIR, args.overwrite)
    src = load_source(args.run, args.data, splits=("train", "valid"))
    pruned, pcfg, done = src.model, src.cfg, {}
    if args.keep:
        pruned, pcfg, widths = prune_units(pruned, pcfg, dict(args.keep), src.data.items)
        done.update(keep=dict(args.keep), widths=widths)
    if args.cross_rank:
        pruned, pcfg, cross = prune_cross_rank(pruned, pcfg, args.cross_rank, src.data.items)
        done["cross"] = cross
    cfg = src.finetune_config(args, epochs=args.finetune_epochs, base=pcfg)
    if args.finetune_epochs > 0:
        pruned = train(cfg, src.data, progress=not args.no_progress, model=pruned).model
    facts = {"prune": {**done, "finetune_epochs": args.finetune_epochs}}
    m = save_derived(args.out, src, cfg, pruned, facts, args.overwrite)
    what = [f"widths {done['widths']}"] if "widths" in done else []
    if "cross" in done:
        c = done["cross"]
        what.append(
            f"cross weights {c['cross_weights'][0]:,} -> {c['cross_weights'][1]:,} (rank {c['rank']})"
        )
    print(
        f"valid AUC {m['valid_auc']:.4f} (was {src.valid_auc:.4f}); {'; '.join(what)}\nrun written to {args.out}"
    )
    return 0
