"""Benchmark Track-1 retrievers on one data root: quality on both sub-tasks and what it costs.

Every retriever ranks MMDocIR pages (inside each question's own document) and M2KR passages (the
whole pool); `mmctr.retrieval.metrics.evaluate` scores them against the root's answer key
(`load_truth`: the generator's truth/, or gold carried by the data files). Written to --out:

  retrieval_bench.json  every retriever x task: R@1/3/5/10, nDCG@5, task score, overall score, per
                        kind (M2KR query kinds; MMDocIR text/table/chart/figure), indexing items/s,
                        query p50/p99 ms (encode and search apart), index bytes; the machine
  retrieval_bench.md    the same as tables

By default vectors are encoded into a fresh, temporary embedding cache, so the timings are those
of a cold run; --cache-dir reuses one (runs are then marked `warm cache`, and their encode and
index timings show cache reads, not encoding).

    python scripts/bench_retrieval.py /tmp/t1_small --out /tmp/t1_bench
    python scripts/bench_retrieval.py /tmp/t1_small --out /tmp/t1_bench --retrievers bm25 dense --overwrite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.errors import MMCTRError
from mmctr.outputs import OutputKind, check_out, move_into_place, temp_beside
from mmctr.retrieval.metrics import RULES, evaluate
from mmctr.retrieval.retrievers import RETRIEVERS, RetrieverOptions, build_retriever

OUT_KIND = OutputKind(
    "retrieval bench output", lambda p: p.is_dir() and (p / "retrieval_bench.json").exists()
)
RANK_K = 10  # R@10 is reported whatever the rules


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def costs(t: dict[str, Any]) -> dict[str, Any]:
    """The timings of one rank call, summarised."""
    secs = t.get("index_seconds", 0.0)
    items = t.get("items_indexed", 0)
    enc, search = t.get("encode_ms", []), t.get("search_ms", [])
    total = [e + s for e, s in zip(enc, search, strict=False)]
    return {
        "items_indexed": items,
        "index_seconds": round(secs, 4),
        "index_items_per_s": round(items / secs, 1) if secs > 0 else None,
        "index_bytes": int(t.get("index_bytes", 0)),
        "model_load_seconds": round(t.get("load_seconds", 0.0), 3),
        "queries": len(search),
        "encode_ms_p50": pct(enc, 50),
        "encode_ms_p99": pct(enc, 99),
        "search_ms_p50": pct(search, 50),
        "search_ms_p99": pct(search, 99),
        "query_ms_mean": statistics.fmean(total) if total else None,
        "from_cache": int(t.get("from_cache", 0)),
        "fallback": t.get("fallback"),
        **{k: t[k] for k in ("windows", "queries_verified", "components", "doc_text") if k in t},
    }


def run_one(name: str, data, truth, options: RetrieverOptions, rules: str) -> dict[str, Any]:
    r = build_retriever(name, options)
    row: dict[str, Any] = {"retriever": name, "about": RETRIEVERS[name].about}
    t0 = time.perf_counter()
    ranked_docs = ranked_passages = None
    if data.docs is not None:
        ranked_docs = r.rank_docs(data.docs, RANK_K)
        row["mmdocir_costs"] = costs(r.timings)
    if data.passages is not None:
        ranked_passages = r.rank_passages(data.passages, RANK_K)
        row["m2kr_costs"] = costs(r.timings)
    row["wall_seconds"] = round(time.perf_counter() - t0, 2)
    row["scores"] = evaluate(ranked_docs, ranked_passages, truth, rules)
    return row


# ----------------------------------------------------------------------------------------------
# markdown


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ms(x: float | None) -> str:
    return "–" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.0f}")


def _bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**16 else f"{n / 1024:.1f} KiB"


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    m = result["machine"]
    lines = [
        f"# Track 1 retrievers on `{result['data']}`",
        "",
        f"Rules `{result['rules']}` (task score = mean of R@{'/'.join(map(str, RULES[result['rules']].ks))}); "
        f"MMDocIR recall is fractional, M2KR recall is a hit rate. CPU: {m['cpu']}, {m['cores']} cores, "
        f"{m['torch_threads']} torch threads; {'warm' if result['warm_cache'] else 'cold (fresh)'} embedding cache.",
        "",
        "## Quality",
        "",
        "| retriever | MMDocIR R@1 | R@3 | R@5 | R@10 | nDCG@5 | score | M2KR R@1 | R@3 | R@5 | R@10 | nDCG@5 | score | overall |",
        "|---|" + "---:|" * 13,
    ]
    for row in rows:
        cells = [row["retriever"]]
        for task in ("mmdocir", "m2kr"):
            s = row["scores"].get(task)
            keys = ("R@1", "R@3", "R@5", "R@10", "nDCG@5", "score")
            cells += [_f(s[k]) if s else "–" for k in keys]
        cells.append(f"**{_f(row['scores']['overall']['score'])}**")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Cost",
        "",
        "Index: encoding/tokenising every page or passage (items/s), and what the index holds. Query: "
        "per-query milliseconds, encoding the query and searching apart (p50 / p99). Retrievers share one "
        "embedding cache in a run, so a row whose note counts vectors from the cache did not pay for "
        "encoding those: its cold cost is its own plus that of the row that encoded them (dense for "
        "text, image for windows and query photos). Model loading is left out (JSON: model_load_seconds).",
        "",
        "| retriever | task | items | index s | items/s | index size | encode p50 | p99 | search p50 | p99 | note |",
        "|---|---|" + "---:|" * 8 + "---|",
    ]
    for row in rows:
        for task in ("mmdocir", "m2kr"):
            c = row.get(f"{task}_costs")
            if not c:
                continue
            note = []
            if c.get("fallback"):
                note.append("fallback: " + c["fallback"].split(":")[0])
            if "queries_verified" in c:
                note.append(f"{c['queries_verified']}/{c['queries']} queries verified")
            if c.get("from_cache"):
                note.append(f"{c['from_cache']} vectors from cache")
            lines.append(
                f"| {row['retriever']} | {task} | {c['items_indexed']} | {_f(c['index_seconds'], 2)} | "
                f"{_f(c['index_items_per_s'], 0)} | {_bytes(c['index_bytes'])} | {_ms(c['encode_ms_p50'])} | "
                f"{_ms(c['encode_ms_p99'])} | {_ms(c['search_ms_p50'])} | {_ms(c['search_ms_p99'])} | {'; '.join(note)} |"
            )
    for task, title in (("mmdocir", "MMDocIR by question kind"), ("m2kr", "M2KR by query kind")):
        kinds: list[str] = []
        for row in rows:
            s = row["scores"].get(task)
            for kd in (s or {}).get("by_kind", {}):
                if kd not in kinds:
                    kinds.append(kd)
        if not kinds:
            continue
        first = next(r["scores"][task] for r in rows if r["scores"].get(task))
        counts = [first["by_kind"].get(kd, {}).get("questions", 0) for kd in kinds]
        lines += [
            "",
            f"## {title} (task score; R@1 in brackets)",
            "",
            "| retriever | " + " | ".join(f"{kd} ({n})" for kd, n in zip(kinds, counts, strict=True)) + " |",
            "|---|" + "---:|" * len(kinds),
        ]
        for row in rows:
            s = row["scores"].get(task) or {}
            bk = s.get("by_kind", {})
            cells = [f"{_f(bk[kd]['score'])} ({_f(bk[kd]['R@1'], 2)})" if kd in bk else "–" for kd in kinds]
            lines.append(f"| {row['retriever']} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "data", type=Path, help="a data root (generator output, or real files with an answer key)"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier output of this script")
    ap.add_argument("--retrievers", nargs="+", default=list(RETRIEVERS), choices=list(RETRIEVERS))
    ap.add_argument("--rules", default="final", choices=list(RULES))
    ap.add_argument("--truth", type=Path, default=None, help="answer key directory (default: DATA)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="reuse this embedding cache (warm timings)")
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a RetrieverOptions field, e.g. --option match_candidates=20 --option precision='\"bf16\"'",
    )
    args = ap.parse_args(argv)

    from mmctr.retrieval.data import load, load_truth

    try:
        check_out(args.out, OUT_KIND, args.overwrite)
        opts: dict[str, Any] = {}
        for item in args.option:
            key, sep, value = item.partition("=")
            if not sep:
                raise MMCTRError(f"--option {item!r}: expected KEY=VALUE")
            try:
                opts[key] = json.loads(value)
            except json.JSONDecodeError:
                opts[key] = value
        data = load(args.data)
        truth = load_truth(args.truth or args.data)
        tmp = temp_beside(args.out)
        tmp.mkdir()
    except MMCTRError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="cache-", dir=tmp))
        options = RetrieverOptions.from_dict({**opts, "cache_dir": cache})
        result: dict[str, Any] = {
            "data": str(args.data),
            "rules": args.rules,
            "rank_k": RANK_K,
            "warm_cache": args.cache_dir is not None,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()},
            "machine": machine(),
            "rows": [],
        }
        for name in args.retrievers:
            print(f"[bench_retrieval] {name} ...", file=sys.stderr, flush=True)
            row = run_one(name, data, truth, options, args.rules)
            result["rows"].append(row)
            s = row["scores"]
            print(
                f"[bench_retrieval] {name}: overall {s['overall']['score']:.3f} "
                + " ".join(f"{t} {s[t]['score']:.3f}" for t in ("mmdocir", "m2kr") if s.get(t))
                + f" ({row['wall_seconds']} s)",
                file=sys.stderr,
                flush=True,
            )
        result["machine"]["load_average_at_end"] = list(os.getloadavg())
        if args.cache_dir is None:
            shutil.rmtree(cache)  # ours, made above: the output holds results only
        (tmp / "retrieval_bench.json").write_text(json.dumps(result, indent=2))
        (tmp / "retrieval_bench.md").write_text(render(result))
        move_into_place(tmp, args.out, OUT_KIND, args.overwrite)
    except MMCTRError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)  # ours: a failed run leaves nothing half-written
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
