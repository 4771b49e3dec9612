"""Late interaction with token pooling: how much of the unpooled score each pool factor keeps, for
how many stored vectors, against the single-vector dense retriever in the same run.

Rows `late f=F` pool each candidate alone (Ward to n // F, `pooling="ward"`); rows `late global
f=F` cut every candidate's Ward tree at one merge height for the whole pool (total // F vectors,
`pooling="global"`). The late retriever runs with each in turn; the first run encodes the token vectors
into the token-vector cache (or reads them from an earlier run), the others pool the cached ones.
Scores are the challenge's final rules (`mmctr.retrieval.metrics.evaluate` against the root's
answer key). M2KR image-only queries take the image retriever's ranking in `late` (the same for
every factor), so the M2KR column `img+q` (image_question queries, ranked by text alone in both
late and dense) is where token pooling shows on M2KR. Latency: per-query search p50/p99 (MMDocIR:
inside the question's document; M2KR: text queries over the whole pool) and query encoding p50.

    OPENBLAS_NUM_THREADS=1 python scripts/bench_late.py T1_DATA --factors 1 2 3 \
        --global-factors 2.5 3 --json WORK/late_bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.retrieval.data import load, load_truth
from mmctr.retrieval.metrics import evaluate
from mmctr.retrieval.retrievers.base import Retriever, RetrieverOptions
from mmctr.retrieval.retrievers.dense import DenseRetriever
from mmctr.retrieval.retrievers.late import LateInteractionRetriever

K = 10


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def run(r: Retriever, data, truth) -> dict[str, Any]:
    ranked_docs = r.rank_docs(data.docs, K)
    td = r.timings
    ranked_passages = r.rank_passages(data.passages, K)
    tp = r.timings
    s = evaluate(ranked_docs, ranked_passages, truth, "final")
    text_q = [i for i, q in enumerate(data.passages.queries) if q.question]
    m2kr_search = [tp["search_ms"][i] for i in text_q]
    m2kr_encode = [tp["encode_ms"][i] for i in text_q]
    return {
        "mmdocir": s["mmdocir"]["score"],
        "m2kr": s["m2kr"]["score"],
        "img+q": s["m2kr"]["by_kind"]["image_question"]["score"],
        "overall": s["overall"]["score"],
        # the text side's vectors (late: token vectors; dense: one per candidate)
        "vectors": {
            "mmdocir": td.get("vectors", td["items_indexed"]),
            "m2kr": tp.get("vectors", tp["items_indexed"]),
        },
        "bytes": {
            "mmdocir": td.get("vector_bytes", td["index_bytes"]),
            "m2kr": tp.get("vector_bytes", tp["index_bytes"]),
        },
        "index_seconds": {"mmdocir": td["index_seconds"], "m2kr": tp["index_seconds"]},
        "from_cache": {"mmdocir": td["from_cache"], "m2kr": tp["from_cache"]},
        "search_ms": {
            "mmdocir": [pct(td["search_ms"], 50), pct(td["search_ms"], 99)],
            "m2kr_text": [pct(m2kr_search, 50), pct(m2kr_search, 99)],
        },
        "encode_ms_p50": {"mmdocir": pct(td["encode_ms"], 50), "m2kr_text": pct(m2kr_encode, 50)},
        "fallback": tp.get("fallback"),
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    base = rows["late f=1"]
    vec1 = base["vectors"]["mmdocir"] + base["vectors"]["m2kr"]
    lines = [
        "| retriever | MMDocIR | M2KR | M2KR img+q | overall | kept (MMDocIR / img+q / overall) | vectors "
        "(MMDocIR + M2KR) | of f=1 | vector bytes | MMDocIR search p50 / p99 ms | M2KR text search p50 / p99 ms |",
        "|---|" + "---:|" * 10,
    ]
    for name, r in rows.items():
        vec = r["vectors"]["mmdocir"] + r["vectors"]["m2kr"]
        kept = " / ".join(f"{100 * r[t] / base[t]:.1f}%" for t in ("mmdocir", "img+q", "overall"))
        sd, sp = r["search_ms"]["mmdocir"], r["search_ms"]["m2kr_text"]
        lines.append(
            f"| {name} | {r['mmdocir']:.4f} | {r['m2kr']:.4f} | {r['img+q']:.4f} | {r['overall']:.4f} | {kept} | "
            f"{r['vectors']['mmdocir']:,} + {r['vectors']['m2kr']:,} | {100 * vec / vec1:.1f}% | "
            f"{(r['bytes']['mmdocir'] + r['bytes']['m2kr']) / 2**20:.2f} MiB | {sd[0]:.2f} / {sd[1]:.2f} | "
            f"{sp[0]:.2f} / {sp[1]:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a data root with an answer key (generator output)")
    ap.add_argument(
        "--factors",
        type=float,
        nargs="+",
        default=[1, 2, 3, 4],
        help="pool factors of per-candidate Ward (1 first)",
    )
    ap.add_argument(
        "--global-factors",
        type=float,
        nargs="*",
        default=[2.5],
        help="pool factors of pooling=global (one Ward merge height for the pool); 2.5 keeps 40%%",
    )
    ap.add_argument("--cache-dir", type=Path, default=None, help="default: $MMCTR_CACHE or ~/.cache/mmctr")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the cores not busy)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.factors[0] != 1:
        ap.error("--factors must start with 1: the other factors are compared with it")

    import torch

    from mmctr.encoders.base import auto_threads

    torch.set_num_threads(args.threads or auto_threads())
    data, truth = load(args.data), load_truth(args.data)
    options = RetrieverOptions(cache_dir=args.cache_dir, device="cpu")
    rows: dict[str, dict[str, Any]] = {}
    runs = [("ward", f) for f in args.factors] + [("global", f) for f in args.global_factors]
    for pooling, f in runs:
        f = int(f) if float(f).is_integer() else f
        name = f"late f={f}" if pooling == "ward" else f"late {pooling} f={f}"
        print(f"[bench_late] {name} ...", file=sys.stderr, flush=True)
        r = LateInteractionRetriever(options, pool_factor=f, pooling=pooling)
        rows[name] = run(r, data, truth)
    print("[bench_late] dense ...", file=sys.stderr, flush=True)
    rows["dense"] = run(DenseRetriever(options), data, truth)
    print(f"data {args.data}; torch threads {torch.get_num_threads()}; k={K}; rules final")
    print(f"late M2KR fallback: {rows['late f=1']['fallback']}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    from mmctr.errors import script_exit

    script_exit(main)
