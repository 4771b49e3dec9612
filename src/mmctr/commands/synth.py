"""`mmctr synth`: write a synthetic data set in the exact MMCTR layout, with ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmctr.data.synth.config import SCALES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("synth", help="generate MMCTR-format data with a known ground truth")
    p.add_argument(
        "--scale",
        default="small",
        choices=list(SCALES),
        help="tiny: tests (seconds); small: the demo; full: the real challenge's counts",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="data root to write (must not exist or be empty)")
    p.add_argument("--no-images", action="store_true", help="skip the cover images (item_images/)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--workers", type=int, default=2, help="processes drawing the cover images")
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.data.synth import generate

    summary = generate(
        args.out,
        scale=args.scale,
        seed=args.seed,
        images=not args.no_images,
        overwrite=args.overwrite,
        workers=args.workers,
    )
    print(json.dumps(summary, indent=2))
    return 0
