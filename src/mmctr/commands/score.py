"""`mmctr score`: the AUC of a submission zip against ground-truth labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("score", help="AUC of a submission against ground truth (ID,label csv)")
    p.add_argument("--pred", type=Path, required=True, help="submission zip (or prediction.csv)")
    p.add_argument("--truth", type=Path, required=True, help="ground truth csv, header ID,label")
    p.add_argument("--json", action="store_true", help='print {"auc": ...} as JSON')
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.submission import score

    result = score(args.pred, args.truth)
    if args.json:
        print(json.dumps({"auc": result["auc"], "rows": result["rows"]}))
    else:
        print(f"AUC {result['auc']:.6f} over {result['rows']:,} rows ({result['track']})")
    return 0
