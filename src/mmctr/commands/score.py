"""`mmctr score`: the AUC of a submission zip against ground-truth labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "score",
        help="AUC of a submission against ground truth (ID,label csv)",
        description="Check a submission (rows, IDs, values) and print its AUC against the ground truth. "
        "When the truth is a generated data root's, the oracle AUC (the true click probability's, the "
        "ceiling no model can pass) is printed beside it.",
    )
    p.add_argument("--pred", type=Path, required=True, help="submission zip (or prediction.csv)")
    p.add_argument(
        "--truth",
        type=Path,
        required=True,
        help="ground truth csv, header ID,label (DATA/truth/test_labels.csv)",
    )
    p.add_argument(
        "--json", action="store_true", help='print {"auc": ..., "rows": ..., "oracle_auc": ...} as JSON'
    )
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.submission import oracle_test_auc, score

    result = score(args.pred, args.truth)
    oracle = oracle_test_auc(args.truth)
    if args.json:
        out = {"auc": result["auc"], "rows": result["rows"]}
        if oracle is not None:
            out["oracle_auc"] = oracle
        print(json.dumps(out))
    else:
        line = f"AUC {result['auc']:.6f} over {result['rows']:,} rows ({result['track']})"
        if oracle is not None:
            line += f"; oracle AUC {oracle:.6f} (gap {oracle - result['auc']:.4f})"
        print(line)
    return 0
