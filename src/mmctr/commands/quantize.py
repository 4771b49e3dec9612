"""`mmctr quantize`: store a trained run's tables (and optionally its linears) in int8 or 4-bit."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from mmctr.compress.quant import TECHNIQUES

    p = sub.add_parser(
        "quantize",
        help="store a trained run's embedding tables in int8 / 4-bit (per-row scale), optionally "
        "with quantisation-aware fine-tuning",
        description="Quantise a trained run's weights with one scale per row and write a new run "
        "directory that stores them small (scheme names as in `mmctr bench`: "
        + ", ".join(f"{k} = {v}" for k, v in TECHNIQUES.items())
        + "). Compute stays fp32: predict, serve and bench load the run as any other. "
        "--qat-epochs fine-tunes through the rounding (straight-through gradient) first.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", type=Path, required=True, help="the trained run to quantise")
    p.add_argument(
        "--scheme", nargs="+", default=["int8emb"], choices=sorted(TECHNIQUES), help="what to quantise"
    )
    p.add_argument(
        "--qat-epochs", type=int, default=0, help="quantisation-aware fine-tuning epochs (0: none)"
    )
    p.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the run's lr / 10)")
    p.add_argument(
        "--data", type=Path, help="data root for the valid AUC and fine-tuning (default: the run's)"
    )
    p.add_argument("--seed", type=int, help="fine-tuning seed (default: the run's)")
    p.add_argument("--batch-size", type=int, help="fine-tuning batch size (default: the run's)")
    p.add_argument("--threads", type=int, help="threads (default: the run's)")
    p.add_argument("--out", type=Path, required=True, help="run directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.compress import load_source, save_derived
    from mmctr.compress.quant import QuantSpec, run_bytes
    from mmctr.outputs import RUN_DIR, check_out

    check_out(args.out, RUN_DIR, args.overwrite)
    spec = QuantSpec.from_techniques(args.scheme)
    src = load_source(args.run, args.data, splits=("train", "valid") if args.qat_epochs else ("valid",))
    cfg = src.finetune_config(args, epochs=args.qat_epochs)
    from mmctr.compress import quantize_run_model

    model, qat = quantize_run_model(
        src.model, spec, cfg, src.data, args.qat_epochs, progress=not args.no_progress
    )
    m = save_derived(args.out, src, cfg, model, {"quantize": spec.to_dict(), **qat}, args.overwrite)
    print(
        f"valid AUC {m['valid_auc']:.4f} (was {src.valid_auc:.4f}); {run_bytes(args.out):,} bytes on disk "
        f"(was {run_bytes(args.run):,})\nrun written to {args.out}"
    )
    return 0
