"""`mmctr report`: one self-contained HTML page from runs, bench outputs, embeddings and Track 1 scores."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from mmctr.report.collect import KINDS

    kinds = "; ".join(KINDS.values())
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page of runs, benchmarks, embeddings and retrieval results",
        description="Read any mix of inputs and write one HTML file with everything inline (styles, "
        "images, a small script; no network): a sortable summary of every run, learning curves, "
        "the AUC/score frontier against latency and training cost, embedding maps, Track 1 "
        "recall curves and missed queries, and the machines. Each path's kind is read from its "
        f"files; a directory of none stands for the inputs directly inside it. Kinds: {kinds}.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="inputs (files or directories)")
    p.add_argument(
        "--out", type=Path, default=Path("report.html"), help="HTML file to write (default report.html)"
    )
    p.add_argument("--title", default=None, help="page title (default 'mmctr report')")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier report")
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.report import write_report

    out = write_report(args.paths, args.out, args.title, overwrite=args.overwrite)
    print(f"report written to {out} ({out.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0
