"""Track 1 distillation: the single-vector student against its late-interaction teacher and the dense
single-vector baseline, measured by `mmctr bench --track1` (the same rows, scores and timings).

One bench runs the peers and the first run's student (`--retrievers dense late late_pool
distilled --run RUNS[0]`); each further run (another seed) is benched as `distilled` alone, on
the same data, cache and thread count. Written to --out:

  distill.json  the rows (bench summary columns, M2KR image_question score, share of late kept),
                each run's training facts (teacher, seed, train seconds, held-out KL and agreement)
  distill.md    the same as tables

Paths are written as the labels given (--data-label, --run-labels), never as the local paths.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python scripts/bench_t1_distill.py --data T1_2 \
        --runs RUN_seed0 RUN_seed1 --cache-dir CACHE --out docs/benchmarks/retrieval_small
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from mmctr.bench.retrieval import Track1BenchSettings, run_track1_bench

PEERS = ["dense", "late", "late_pool"]
TEACHER_ROW = "late"


def bench(data: Path, run: Path, names: list[str], cache: Path | None, threads: int, work: Path) -> dict:
    settings = Track1BenchSettings(
        data=data,
        out=work,
        retrievers=names,
        index_kinds=[],
        cache_dir=cache,
        run=run,
        threads=threads,
        progress=True,
    )
    return run_track1_bench(settings)


def row_of(row: dict[str, Any], label: str) -> dict[str, Any]:
    s = row["summary"]
    m2 = row["scores"].get("m2kr") or {}
    out = {
        "name": label,
        "retriever": row["retriever"],
        **{k: s[k] for k in ("overall", "mmdocir", "m2kr", "bytes_per_page", "bytes_per_passage")},
        "m2kr_image_question": m2.get("by_kind", {}).get("image_question", {}).get("score"),
        "query_ms_p50": s["query_ms_p50"],
        "query_ms_p99": s["query_ms_p99"],
        "train_minutes": s["train_minutes"],
        "costs": {t: row.get(f"{t}_costs") for t in ("mmdocir", "m2kr")},
    }
    for task in ("mmdocir", "m2kr"):  # what the candidates' own vectors take (M2KR adds image windows)
        c = out["costs"][task]
        if c:
            c.pop("components", None)
    return out


def run_facts(run: Path, label: str) -> dict[str, Any]:
    info = json.loads((run / "retrieval_run.json").read_text())
    m = json.loads((run / "metrics.json").read_text())
    return {
        "label": label,
        "teacher": info["teacher"],
        "seed": info["distill_config"]["seed"],
        "distill_config": info["distill_config"],
        "vector": info.get("vector"),
        "train_seconds": round(m["train_seconds"], 1),
        "teacher_seconds": round(m["teacher_seconds"], 1),
        "best_epoch": m["best_epoch"],
        "epochs_run": len(m["history"]) - 1,
        "questions": m["questions"],
        "held_out_questions": m["held_out_questions"],
        "held_out_untrained": m["held_out_untrained"],
        "held_out_best": m["held_out_best"],
    }


def render(result: dict[str, Any]) -> str:
    rows, m = result["rows"], result["machine"]
    late = next(r for r in rows if r["name"] == TEACHER_ROW)

    def kept(r: dict[str, Any], key: str) -> str:
        return f"{100 * r[key] / late[key]:.1f}%" if late[key] else "–"

    def n(x: float | None, digits: int = 3) -> str:
        return "–" if x is None else f"{x:.{digits}f}"

    def ms(x: float | None) -> str:
        return "–" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.0f}")

    lines = [
        f"# Track 1: distilling late interaction into one vector per page (`{result['data']}`)",
        "",
        "```",
        result["command"],
        "```",
        "",
        f"CPU: {m['cpu']}, {m['cores']} cores; every timing on {m['threads']} thread; warm token and "
        "embedding cache, so query times are a cache read of the query's vectors plus the search (MiniLM "
        "encoding a new query adds 23-28 ms to every row alike). Final rules. M2KR image-only queries "
        "(no question text) take the image retriever's ranking in late, late_pool and distilled alike, "
        "so their bytes per passage include the image windows; `img+q` is the M2KR kind ranked by text.",
        "",
        "| row | overall | MMDocIR | M2KR | M2KR img+q | kept of late: overall / MMDocIR / img+q | "
        "bytes/page | bytes/passage | query p50 ms | p99 ms | train min |",
        "|---|" + "---:|" * 10,
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {n(r['overall'])} | {n(r['mmdocir'])} | {n(r['m2kr'])} | "
            f"{n(r['m2kr_image_question'])} | {kept(r, 'overall')} / {kept(r, 'mmdocir')} / "
            f"{kept(r, 'm2kr_image_question')} | {r['bytes_per_page']:,.0f} | {r['bytes_per_passage']:,.0f} | "
            f"{ms(r['query_ms_p50'])} | {ms(r['query_ms_p99'])} | {n(r['train_minutes'], 1)} |"
        )
    lines += [
        "",
        "## MMDocIR query latency (no fallback in any row)",
        "",
        "Per question, ms: encode = reading the query's vectors from the cache plus, for the student, its "
        "query tower (attention pooling + projection in torch); search = scoring the document's pages. "
        "M2KR's medians mix text queries with the image fallback of the image-only ones (JSON: costs).",
        "",
        "| row | encode p50 | search p50 | search p99 |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        c = r["costs"]["mmdocir"] or {}
        lines.append(
            f"| {r['name']} | {n(c.get('encode_ms_p50'), 3)} | {n(c.get('search_ms_p50'), 3)} | "
            f"{n(c.get('search_ms_p99'), 3)} |"
        )
    lines += [
        "",
        "## The student's runs",
        "",
        "Trained on the train split of the seed-0 data (MMDocIR questions and the M2KR questions with "
        "text); a share held out for early stopping on the KL to the teacher. Agreement: the share of "
        "the teacher's top 5 in the student's top 5 (M2KR over the whole pool). Task score: mean "
        "R@1/3/5 of the held-out questions against their gold (not used for training or stopping).",
        "",
        "| run | teacher | seed | train s | best epoch / run | held-out KL | agreement@5 | task score |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f in result["runs"]:
        h0, h1 = f["held_out_untrained"], f["held_out_best"]
        lines.append(
            f"| {f['label']} | {f['teacher']} | {f['seed']} | {f['train_seconds']} | "
            f"{f['best_epoch']} / {f['epochs_run']} | {h0['kl']:.3f} → {h1['kl']:.3f} | "
            f"{h0['agreement']:.3f} → {h1['agreement']:.3f} | "
            f"{h0.get('task_score', float('nan')):.3f} → {h1.get('task_score', float('nan')):.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--render", type=Path, help="only write distill.md again from this distill.json")
    p.add_argument("--data", type=Path, help="data root to score (its test split)")
    p.add_argument("--runs", type=Path, nargs="+", help="runs of `mmctr retrieval distill`")
    p.add_argument("--out", type=Path, help="folder for distill.json and distill.md")
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="token/embedding cache (default: a fresh one)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-label", default="T1_2", help="how the data is named in the output")
    p.add_argument("--run-labels", nargs="+", default=None, help="how the runs are named (default RUN_seedS)")
    args = p.parse_args(argv)
    if args.render is not None:
        (args.render.parent / "distill.md").write_text(render(json.loads(args.render.read_text())))
        return 0
    if args.data is None or not args.runs or args.out is None:
        p.error("--data, --runs and --out are needed (or --render JSON)")
    labels = args.run_labels or [
        f"RUN_seed{json.loads((r / 'retrieval_run.json').read_text())['distill_config']['seed']}"
        for r in args.runs
    ]
    command = (
        "python scripts/bench_t1_distill.py --data "
        + args.data_label
        + " --runs "
        + " ".join(labels)
        + (" --cache-dir CACHE" if args.cache_dir else "")
        + f" --threads {args.threads} --out docs/benchmarks/retrieval_small"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-t1-distill-") as work:
        first = bench(
            args.data, args.runs[0], PEERS + ["distilled"], args.cache_dir, args.threads, Path(work) / "0"
        )
        machine = first["machine"]
        for r in first["rows"]:
            rows.append(row_of(r, f"distilled ({labels[0]})" if r["name"] == "distilled" else r["name"]))
        for i, (run, label) in enumerate(zip(args.runs[1:], labels[1:], strict=True), start=1):
            more = bench(args.data, run, ["distilled"], args.cache_dir, args.threads, Path(work) / str(i))
            rows += [row_of(r, f"distilled ({label})") for r in more["rows"]]
            machine["load_average_at_end"] = more["machine"]["load_average_at_end"]
    late = next(r for r in rows if r["name"] == TEACHER_ROW)
    for r in rows:
        r["kept_of_late"] = {
            k: (r[k] / late[k] if late[k] else None) for k in ("overall", "mmdocir", "m2kr_image_question")
        }
    result = {
        "data": args.data_label,
        "command": command,
        "machine": machine,
        "rows": rows,
        "runs": [run_facts(r, lb) for r, lb in zip(args.runs, labels, strict=True)],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in (("distill.json", json.dumps(result, indent=2) + "\n"), ("distill.md", render(result))):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(args.out / name)
    print(render(result))
    return 0


if __name__ == "__main__":
    from mmctr.errors import script_exit

    script_exit(main)
