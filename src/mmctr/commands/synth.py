"""`mmctr synth`: write a synthetic data set in the exact MMCTR layout, with ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmctr.data.synth.config import SCALES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "synth",
        help="generate MMCTR-format data with a known ground truth",
        description="Write a data set in the MicroLens-1M MMCTR layout (train/valid/test, item_info, "
        "item_feature, item_seq, covers) plus DATA/truth/ (test labels, the true click probability of "
        "every row, world.json), which training never reads. The same seed gives byte-identical files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--scale",
        default="small",
        choices=list(SCALES),
        help="tiny: tests (seconds); small: the demo; full: the real challenge's counts",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the generated world")
    p.add_argument("--out", type=Path, required=True, help="data root to write (new or empty)")
    p.add_argument("--no-images", action="store_true", help="skip the cover images (item_images/)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier `mmctr synth` data root"
    )
    p.add_argument("--workers", type=int, default=2, help="processes drawing the cover images")
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.data.synth import generate

    s = generate(
        args.out,
        scale=args.scale,
        seed=args.seed,
        images=not args.no_images,
        overwrite=args.overwrite,
        workers=args.workers,
    )
    c = s["counts"]
    print(f"data root: {s['out']}  (scale {args.scale}, seed {args.seed}, {s['seconds']:.1f} s)")
    print(
        f"{c['items']:,} items, {c['users']:,} users; rows train {c['train_rows']:,}, "
        f"valid {c['valid_rows']:,}, test {c['test_rows']:,}"
    )
    print(
        f"oracle AUC valid {s['oracle_valid_auc']:.4f}, test {s['oracle_test_auc']:.4f}; "
        f"positive rate train {s['positive_rate']['train']:.3f}"
    )
    print(f"everything else (counts, parameters): {Path(s['out']) / 'truth' / 'world.json'}")
    return 0
