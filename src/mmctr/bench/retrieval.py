"""Track 1's efficiency–effectiveness table: every retriever, and every vector kind of the persistent
index, scored on both sub-tasks and timed, from one command (`mmctr bench --track1`).

Retriever rows: each registered retriever ranks MMDocIR pages (inside each question's own document)
and M2KR passages (the whole pool); `mmctr.retrieval.metrics.evaluate` scores them against the
root's answer key (`load_truth`: the generator's truth/, or gold carried by the data files).

Index rows (`index:<kind>`): the dense retriever's MiniLM vectors (page text per `doc_text`, passage
text) held in one `VectorStore` of each kind (flat, hnsw, ivfpq, int8, binary) over the whole pool,
as `mmctr retrieval index` holds them. MMDocIR questions search the pool restricted to their
document's rows with a FAISS `IDSelectorBatch` (the kind's own search, so hnsw and ivfpq show what
their approximate search loses inside a filter, not an exact re-scoring); M2KR queries search the
whole pool. Each store is saved and loaded back to time a load from disk.

Every row gets the same columns: overall score (the chosen rules), MMDocIR and M2KR scores, index
bytes per page and per passage, items indexed per second, per-query p50/p99 of encode + search, and
training minutes (from `RUN/metrics.json` for rows that read a trained run). All of it runs on
`threads` threads (default 1: the query latencies are those of one thread). Written to --out:

  retrieval_bench.json  the rows (summary columns, scores per task and kind, costs), the Pareto front,
                        the machine
  retrieval_bench.md    the same as tables
  retrieval_pareto.png  overall score against query p50, the Pareto front as a step line

By default vectors are encoded into a fresh, temporary embedding cache, so the timings are those
of a cold run; `cache_dir` reuses one (the run is then marked `warm cache`, and its encode and
index timings show cache reads, not encoding).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.errors import ConfigError, DataError
from mmctr.outputs import OutputKind, check_out, move_into_place, temp_beside

OUT_KIND = OutputKind(
    "retrieval bench output", lambda p: p.is_dir() and (p / "retrieval_bench.json").exists()
)
JSON_NAME, MD_NAME, PNG_NAME = "retrieval_bench.json", "retrieval_bench.md", "retrieval_pareto.png"
RANK_K = 10  # R@10 is reported whatever the rules
WARMUP = 3  # untimed query encodings and searches before the timed ones (first calls pay allocation)
NEEDS_RUN = ("trained", "hybrid_trained", "distilled")  # retrievers that cannot run without --run
# the `kind` of RUN/retrieval_run.json each of them reads: a default list takes only those that fit
RUN_KINDS = {
    "trained": "mmctr retrieval two-tower",
    "hybrid_trained": "mmctr retrieval two-tower",
    "distilled": "mmctr retrieval distilled",
}
# retrievers whose weights come from a model hub or a local path the user names (--option
# image_encoder=...): asked for by name only, never part of the default list
NEEDS_WEIGHTS = ("clip", "colpali")
TASKS = ("mmdocir", "m2kr")


@dataclass
class Track1BenchSettings:
    """What one `mmctr bench --track1` run measures."""

    data: Path
    out: Path
    retrievers: list[str] | None = None  # None: every registered one (those in NEEDS_RUN only with run)
    index_kinds: list[str] | None = None  # None: every VectorStore kind; []: no index rows
    rules: str = "final"
    truth: Path | None = None  # answer key directory (default: data)
    cache_dir: Path | None = None  # None: a fresh temporary cache (cold timings)
    options: dict[str, Any] = field(default_factory=dict)  # RetrieverOptions fields
    run: Path | None = None  # a trained Track-1 run directory
    threads: int = 1  # torch / faiss / BLAS threads for the whole run; 0: leave them as they are
    load_repeats: int = 3  # index loads from disk timed per kind and task (median)
    overwrite: bool = False
    command: str = ""
    progress: bool = True  # one line per row on stderr


def parse_options(items: list[str]) -> dict[str, Any]:
    """`KEY=JSON` strings (a bare string value is taken as a string) -> RetrieverOptions fields."""
    opts: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE, e.g. match_candidates=20")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


# ----------------------------------------------------------------------------------------------
# the machine and the thread count


def machine(threads: int) -> dict[str, Any]:
    import torch

    from mmctr.host import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads or torch.get_num_threads(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


@contextmanager
def thread_limit(n: int) -> Iterator[None]:
    """Every library that spawns threads here (torch, faiss's OpenMP, numpy's BLAS) on `n` threads,
    restored afterwards: a query's latency on one thread is what a one-core worker would see."""
    if n <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        import faiss
    except ImportError:  # the index rows say so themselves; retrievers do not need it
        faiss = None
    faiss_before = faiss.omp_get_max_threads() if faiss else 0
    if faiss:
        faiss.omp_set_num_threads(n)
    try:
        with ExitStack() as stack:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # not installed: numpy's BLAS keeps its own default
                pass
            else:
                stack.enter_context(threadpool_limits(n))
            yield
    finally:
        torch.set_num_threads(before)
        if faiss:
            faiss.omp_set_num_threads(faiss_before)


# ----------------------------------------------------------------------------------------------
# costs and the summary columns


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


def query_ms(t: dict[str, Any]) -> list[float]:
    """Per-query milliseconds of one rank call, encode + search."""
    return [e + s for e, s in zip(t.get("encode_ms", []), t.get("search_ms", []), strict=False)]


def summarise(row: dict[str, Any], per_query_ms: list[float], train_minutes: float | None) -> dict[str, Any]:
    """The columns every row has (the table and the plot are made from these); `per_query_ms` holds
    the encode + search time of every query of both tasks."""
    s = row["scores"]
    c = {task: row.get(f"{task}_costs") for task in TASKS}

    def per_item(task: str) -> float | None:
        ct = c[task]
        return round(ct["index_bytes"] / ct["items_indexed"], 1) if ct and ct["items_indexed"] else None

    items = sum(ct["items_indexed"] for ct in c.values() if ct)
    secs = sum(ct["index_seconds"] for ct in c.values() if ct)
    return {
        "overall": s["overall"]["score"],
        "mmdocir": s["mmdocir"]["score"] if s.get("mmdocir") else None,
        "m2kr": s["m2kr"]["score"] if s.get("m2kr") else None,
        "bytes_per_page": per_item("mmdocir"),
        "bytes_per_passage": per_item("m2kr"),
        "items_per_s": round(items / secs, 1) if secs > 0 else None,
        "query_ms_p50": pct(per_query_ms, 50),
        "query_ms_p99": pct(per_query_ms, 99),
        "train_minutes": train_minutes,
    }


def train_minutes(run: Path) -> float | None:
    """Minutes a trained run took: `train_seconds` of RUN/metrics.json (else RUN/run.json); None
    when neither records it."""
    for name in ("metrics.json", "run.json"):
        path = Path(run) / name
        if not path.is_file():
            continue
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(path, None, f"not valid JSON ({err}); is the run complete?") from None
        secs = d.get("train_seconds") if isinstance(d, dict) else None
        if secs is not None:
            try:
                return round(float(secs) / 60, 2)
            except (TypeError, ValueError):
                raise DataError(path, "train_seconds", f"{secs!r} is not a number of seconds") from None
    return None


# ----------------------------------------------------------------------------------------------
# retriever rows


def run_retriever(name: str, data, truth, options, rules: str) -> tuple[dict[str, Any], list[float]]:
    """One retriever's row, and the encode + search milliseconds of each of its queries."""
    from mmctr.retrieval.metrics import evaluate
    from mmctr.retrieval.retrievers import RETRIEVERS, build_retriever

    r = build_retriever(name, options)
    row: dict[str, Any] = {
        "name": name,
        "kind": "retriever",
        "retriever": name,
        "about": RETRIEVERS[name].about,
    }
    t0 = time.perf_counter()
    ranked_docs = ranked_passages = None
    ms: list[float] = []
    if data.docs is not None:
        ranked_docs = r.rank_docs(data.docs, RANK_K)
        row["mmdocir_costs"] = costs(r.timings)
        ms += query_ms(r.timings)
    if data.passages is not None:
        ranked_passages = r.rank_passages(data.passages, RANK_K)
        row["m2kr_costs"] = costs(r.timings)
        ms += query_ms(r.timings)
    row["wall_seconds"] = round(time.perf_counter() - t0, 2)
    row["scores"] = evaluate(ranked_docs, ranked_passages, truth, rules)
    return row, ms


# ----------------------------------------------------------------------------------------------
# index rows


@dataclass
class TaskVectors:
    """One sub-task's MiniLM vectors: every candidate, and every query with its encode time."""

    items: np.ndarray  # (n, D) float32, L2-normalised
    queries: np.ndarray  # (q, D)
    encode_ms: list[float]  # per query: encoded alone, uncached, as a service would see it
    encode_seconds: float  # encoding the candidates (cache reads where from_cache)
    from_cache: int
    encode_from: str  # "this row" | "dense row" (the dense retriever's cold time for the same texts)


def _encode_queries(embedder, texts: list[str]) -> tuple[np.ndarray, list[float]]:
    """Each query encoded alone and timed, bypassing the cache: every index kind serves a new
    query this way, so the encode half of the latency must not be a cache read."""
    for text in texts[:WARMUP]:
        embedder.encoder.encode([text])
    vecs, ms = [], []
    for text in texts:
        t0 = time.perf_counter()
        vecs.append(embedder.encoder.encode([text])[0])
        ms.append((time.perf_counter() - t0) * 1000)
    m = np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)
    return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-12), ms


def index_vectors(data, options, dense_row: dict[str, Any] | None) -> dict[str, TaskVectors]:
    """The dense retriever's vectors of both sub-tasks, through the run's embedding cache. When the
    dense row ran in this bench it encoded the same texts with the same encoder, so its index time
    is the encoding cost of these rows too (here they are cache reads)."""
    from mmctr.retrieval.retrievers.base import TextEmbedder, page_texts, query_text

    emb = TextEmbedder(options)
    out: dict[str, TaskVectors] = {}
    jobs = []
    if data.docs is not None:
        jobs.append(
            (
                "mmdocir",
                page_texts(data.docs.pages, options.doc_text),
                [q.question for q in data.docs.questions],
            )
        )
    if data.passages is not None:
        jobs.append(
            (
                "m2kr",
                [x or "" for x in data.passages.passages.text],
                [query_text(q, options.query_instruction) for q in data.passages.queries],
            )
        )
    for task, texts, queries in jobs:
        loaded = emb.load_seconds
        t0 = time.perf_counter()
        items = emb.items(texts)  # the dense retriever's very texts: its cache entries
        secs = time.perf_counter() - t0 - (emb.load_seconds - loaded)
        emb.ensure_loaded()
        qv, ms = _encode_queries(emb, queries)
        dense_costs = (dense_row or {}).get(f"{task}_costs")
        from_dense = bool(dense_costs and items.from_cache)
        out[task] = TaskVectors(
            items=items.matrix,
            queries=qv,
            encode_ms=ms,
            encode_seconds=dense_costs["index_seconds"] if from_dense else secs,
            from_cache=items.from_cache,
            encode_from="dense row" if from_dense else "this row",
        )
    return out


def search_within(store, q: np.ndarray, rows: list[int], k: int) -> list[int]:
    """The store's rows among `rows` best for query `q` (1, D), best first, by the kind's own
    search restricted with a FAISS IDSelector; fewer than k when an approximate kind misses some."""
    import faiss

    sel = faiss.IDSelectorBatch(np.asarray(rows, dtype=np.int64))
    if store.kind == "hnsw":
        params = faiss.SearchParametersHNSW(sel=sel)
    elif store.kind == "ivfpq":
        params = faiss.SearchParametersIVF(sel=sel, nprobe=store.index.nprobe)
    else:
        params = faiss.SearchParameters(sel=sel)
    k = min(k, len(rows))
    if store.kind == "binary":
        _, idx = store.index.search(np.packbits(q > 0, axis=1), k, params=params)  # as VectorStore does
    else:
        _, idx = store.index.search(q, k, params=params)
    return [int(i) for i in idx[0] if i >= 0]


def _timed_load(path: Path, kind: str, dim: int, repeats: int) -> float:
    from mmctr.retrieval.index.vectors import VectorStore

    ms = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        VectorStore.load(path, kind, dim)
        ms.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ms)


def run_index_kind(
    kind: str, data, truth, vectors: dict[str, TaskVectors], rules: str, workdir: Path, load_repeats: int
) -> tuple[dict[str, Any], list[float]]:
    """One index kind's row, and the encode + search milliseconds of each of its queries."""
    from mmctr.retrieval.index.vectors import VectorStore
    from mmctr.retrieval.metrics import evaluate
    from mmctr.retrieval.retrievers.base import doc_candidates

    row: dict[str, Any] = {
        "name": f"index:{kind}",
        "kind": "index",
        "index_kind": kind,
        "about": f"dense MiniLM vectors in a `{kind}` VectorStore over the whole pool (mmctr retrieval index)",
    }
    t_row = time.perf_counter()
    ranked: dict[str, dict[str, list[str]] | None] = {"mmdocir": None, "m2kr": None}
    ms: list[float] = []
    for task, v in vectors.items():
        store = VectorStore(kind, v.items.shape[1])
        t0 = time.perf_counter()
        store.add(v.items)
        build = time.perf_counter() - t0
        path = workdir / f"{task}.{kind}.faiss"
        store.save(path)
        load_ms = _timed_load(path, kind, store.dim, load_repeats)
        for i in range(min(WARMUP, len(v.queries))):
            store.search(v.queries[i : i + 1], RANK_K)
        search_ms: list[float] = []
        out: dict[str, list[str]] = {}
        short = 0
        if task == "mmdocir":
            docs = data.docs
            cand = doc_candidates(docs)
            for i, q in enumerate(docs.questions):
                rows = cand[q.doc_name]
                t0 = time.perf_counter()
                best = search_within(store, v.queries[i : i + 1], rows, RANK_K)
                search_ms.append((time.perf_counter() - t0) * 1000)
                short += len(best) < min(RANK_K, len(rows))
                out[q.question_id] = [docs.pages.page_id[r] for r in best]
        else:
            ps = data.passages
            ids = ps.passages.passage_id
            for i, q in enumerate(ps.queries):
                t0 = time.perf_counter()
                _, best = store.search(v.queries[i : i + 1], RANK_K)
                search_ms.append((time.perf_counter() - t0) * 1000)
                hits = [int(r) for r in best[0] if r >= 0]
                short += len(hits) < min(RANK_K, len(ids))
                out[q.question_id] = [ids[r] for r in hits]
        ranked[task] = out
        timings = {
            "index_seconds": v.encode_seconds + build,
            "items_indexed": len(v.items),
            "index_bytes": store.nbytes(),
            "encode_ms": v.encode_ms,
            "search_ms": search_ms,
            "from_cache": v.from_cache,
        }
        c = costs(timings)
        ms += query_ms(timings)
        c.update(
            {
                "encode_seconds": round(v.encode_seconds, 4),
                "encode_from": v.encode_from,
                "build_seconds": round(build, 4),
                "build_items_per_s": round(len(v.items) / build, 1) if build > 0 else None,
                "load_ms": round(load_ms, 3),
                "short_rankings": short,
            }
        )
        row[f"{task}_costs"] = c
    row["wall_seconds"] = round(time.perf_counter() - t_row, 2)
    row["scores"] = evaluate(ranked["mmdocir"], ranked["m2kr"], truth, rules)
    return row, ms


# ----------------------------------------------------------------------------------------------
# the run


def resolve_retrievers(names: list[str] | None, run: Path | None) -> list[str]:
    """The retrievers to run: the given names checked against the registry, or every registered
    one (those that need a trained run only when one is given; those that need model weights only
    when named)."""
    from mmctr.retrieval.retrievers import RETRIEVERS

    if names is None:
        kind = _run_kind(run)
        return [
            n
            for n in RETRIEVERS
            if (n not in NEEDS_RUN or (run is not None and kind in (None, RUN_KINDS.get(n))))
            and n not in NEEDS_WEIGHTS
        ]
    for n in names:
        if n not in RETRIEVERS:
            raise ConfigError(f"--retrievers {n}: unknown retriever; available: {', '.join(RETRIEVERS)}")
        if n in NEEDS_RUN and run is None:
            maker = "distill" if n == "distilled" else "train"
            raise ConfigError(
                f"--retrievers {n}: needs --run RUN (a run directory from `mmctr retrieval {maker}`)"
            )
    return list(names)


def _run_kind(run: Path | None) -> str | None:
    """The `kind` RUN/retrieval_run.json records; None when there is no run or it says none."""
    try:
        d = json.loads((Path(run) / "retrieval_run.json").read_text()) if run is not None else None
    except (OSError, ValueError):
        return None
    return d.get("kind") if isinstance(d, dict) else None


def resolve_kinds(kinds: list[str] | None) -> list[str]:
    from mmctr.retrieval.index.vectors import KINDS

    if kinds is None:
        return list(KINDS)
    for k in kinds:
        if k not in KINDS:
            raise ConfigError(f"--index-kinds {k}: unknown index kind; expected one of {', '.join(KINDS)}")
    return list(kinds)


def uses_run(name: str, run: Path | None) -> bool:
    """Whether a retriever row's quality depends on training (trained, and hybrid_trained, which
    fuses it)."""
    return run is not None and name in NEEDS_RUN


def _log(settings: Track1BenchSettings, msg: str) -> None:
    if settings.progress:
        print(f"[bench --track1] {msg}", file=sys.stderr, flush=True)


def _row_line(row: dict[str, Any]) -> str:
    s = row["summary"]
    p50 = s["query_ms_p50"]
    return (
        f"{row['name']}: overall {s['overall']:.3f} "
        + " ".join(f"{t} {s[t]:.3f}" for t in TASKS if s[t] is not None)
        + (f", query p50 {p50:.2f} ms" if p50 is not None else "")
        + f" ({row['wall_seconds']} s)"
    )


def run_track1_bench(settings: Track1BenchSettings) -> dict[str, Any]:
    """Measure every row, write JSON, markdown and the plot into `settings.out`; returns the result."""
    from mmctr.bench.plot_retrieval import front_names, plot_score_latency
    from mmctr.retrieval.data import load, load_truth
    from mmctr.retrieval.metrics import RULES
    from mmctr.retrieval.retrievers import RetrieverOptions

    if settings.rules not in RULES:
        raise ConfigError(f"--rules {settings.rules}: expected one of {', '.join(RULES)}")
    if settings.threads < 0:
        raise ConfigError(f"--threads {settings.threads}: expected 0 (leave as is) or more")
    run = settings.run
    if run is not None and not Path(run).is_dir():
        raise ConfigError(f"--run {run}: not a directory; pass a run directory from `mmctr retrieval train`")
    names = resolve_retrievers(settings.retrievers, run)
    kinds = resolve_kinds(settings.index_kinds)
    if not names and not kinds:
        raise ConfigError("nothing to measure: give --retrievers or --index-kinds")
    if kinds:
        try:
            import faiss  # noqa: F401  (checked now, not after the retrievers ran for minutes)
        except ImportError:
            raise ConfigError(
                "the index rows need faiss-cpu: pip install -e '.[retrieval]', or pass --index-kinds "
                "alone to measure the retrievers only"
            ) from None
    check_out(settings.out, OUT_KIND, settings.overwrite)  # before measuring for minutes
    opts = dict(settings.options)
    if run is not None:
        opts["run"] = run
    RetrieverOptions.from_dict(opts)  # unknown keys fail before the data is read
    data = load(settings.data)
    truth = load_truth(settings.truth or settings.data)
    tmp = temp_beside(settings.out)
    tmp.mkdir()
    try:
        cache = settings.cache_dir or Path(tempfile.mkdtemp(prefix="cache-", dir=tmp))
        options = RetrieverOptions.from_dict({**opts, "cache_dir": cache})
        trained = train_minutes(run) if run is not None else None
        result: dict[str, Any] = {
            "data": str(settings.data),
            "command": settings.command,
            "rules": settings.rules,
            "rank_k": RANK_K,
            "warm_cache": settings.cache_dir is not None,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()},
            "run": str(run) if run is not None else None,
            "index_kinds": kinds,
            "machine": machine(settings.threads),
            "rows": [],
            "skipped": [],
        }
        with thread_limit(settings.threads):
            for name in names:
                _log(settings, f"{name} ...")
                try:
                    row, ms = run_retriever(name, data, truth, options, settings.rules)
                except ConfigError as err:
                    # asked for by name: the user should see it fail; in the default list, a
                    # retriever whose model or package is not here is skipped with the reason
                    if settings.retrievers is not None:
                        raise
                    result["skipped"].append({"name": name, "reason": str(err)})
                    _log(settings, f"{name}: skipped ({err})")
                    continue
                row["summary"] = summarise(row, ms, trained if uses_run(name, run) else 0.0)
                result["rows"].append(row)
                _log(settings, _row_line(row))
            if kinds:
                _log(settings, "index vectors (dense MiniLM) ...")
                dense = next((r for r in result["rows"] if r["name"] == "dense"), None)
                vectors = index_vectors(data, options, dense)
                workdir = Path(tempfile.mkdtemp(prefix="index-", dir=tmp))
                for kind in kinds:
                    row, ms = run_index_kind(
                        kind, data, truth, vectors, settings.rules, workdir, settings.load_repeats
                    )
                    row["summary"] = summarise(row, ms, 0.0)
                    result["rows"].append(row)
                    _log(settings, _row_line(row))
                shutil.rmtree(workdir)
        front = front_names(result["rows"])
        result["pareto_front"] = front
        for row in result["rows"]:
            row["summary"]["on_front"] = row["name"] in front
        result["machine"]["load_average_at_end"] = list(os.getloadavg())
        if settings.cache_dir is None:
            shutil.rmtree(cache)  # ours, made above: the output holds results only
        (tmp / JSON_NAME).write_text(json.dumps(result, indent=2))
        (tmp / MD_NAME).write_text(render(result))
        plot_score_latency(
            result["rows"],
            tmp / PNG_NAME,
            title=f"Track 1 on {Path(settings.data).name}: overall score against query latency",
            threads=result["machine"]["threads"],
        )
        move_into_place(tmp, settings.out, OUT_KIND, settings.overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)  # ours: a failed run leaves nothing half-written
    return result


# ----------------------------------------------------------------------------------------------
# markdown


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ms(x: float | None) -> str:
    return "–" if x is None else (f"{x:.3f}" if x < 0.1 else f"{x:.2f}" if x < 10 else f"{x:.0f}")


def _bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**16 else f"{n / 1024:.1f} KiB"


def _count(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def _train(x: float | None) -> str:
    if x is None:
        return "?"  # a trained row whose run records no train_seconds
    return "0" if x == 0 else f"{x:.1f}"


def render(result: dict[str, Any]) -> str:
    from mmctr.retrieval.metrics import RULES

    rows = result["rows"]
    m = result["machine"]
    threads = m.get("threads", m.get("torch_threads"))
    lines = [
        f"# Track 1 retrievers and index options on `{result['data']}`",
        "",
        f"Rules `{result['rules']}` (task score = mean of R@{'/'.join(map(str, RULES[result['rules']].ks))}; "
        f"overall = mean of the task scores); MMDocIR recall is fractional, M2KR recall is a hit rate. "
        f"CPU: {m['cpu']}, {m['cores']} cores; every timing on {threads} thread{'' if threads == 1 else 's'}; "
        f"{'warm' if result['warm_cache'] else 'cold (fresh)'} embedding cache.",
        "",
        "## Efficiency and effectiveness",
        "",
        "Bytes: what the index holds per page / passage. Items/s: pages and passages indexed per second "
        "(encoding included). Query: per-query milliseconds, encoding the query plus searching, "
        "p50 / p99 over both tasks' queries. Train: minutes of model training the row needs "
        "(`train_seconds` of the run's metrics.json). Front: on the Pareto front of overall score "
        f"against query p50 ({PNG_NAME}).",
        "",
        "| row | overall | MMDocIR | M2KR | bytes/page | bytes/passage | items/s | query p50 ms | p99 ms | train min | front |",
        "|---|" + "---:|" * 9 + "---|",
    ]
    for row in rows:
        s = row["summary"]
        lines.append(
            f"| {row['name']} | **{_f(s['overall'])}** | {_f(s['mmdocir'])} | {_f(s['m2kr'])} | "
            f"{_count(s['bytes_per_page'])} | {_count(s['bytes_per_passage'])} | {_count(s['items_per_s'])} | "
            f"{_ms(s['query_ms_p50'])} | {_ms(s['query_ms_p99'])} | {_train(s['train_minutes'])} | "
            f"{'yes' if s.get('on_front') else ''} |"
        )
    for sk in result.get("skipped", []):
        lines.append(f"\nSkipped `{sk['name']}`: {sk['reason']}")
    lines += [
        "",
        "## Quality",
        "",
        "| row | MMDocIR R@1 | R@3 | R@5 | R@10 | nDCG@5 | score | M2KR R@1 | R@3 | R@5 | R@10 | nDCG@5 | score | overall |",
        "|---|" + "---:|" * 13,
    ]
    for row in rows:
        cells = [row["name"]]
        for task in TASKS:
            s = row["scores"].get(task)
            keys = ("R@1", "R@3", "R@5", "R@10", "nDCG@5", "score")
            cells += [_f(s[k]) if s else "–" for k in keys]
        cells.append(f"**{_f(row['scores']['overall']['score'])}**")
        lines.append("| " + " | ".join(cells) + " |")
    retrievers = [r for r in rows if r["kind"] == "retriever"]
    if retrievers:
        lines += [
            "",
            "## Retriever costs",
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
        for row in retrievers:
            for task in TASKS:
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
                    f"| {row['name']} | {task} | {c['items_indexed']} | {_f(c['index_seconds'], 2)} | "
                    f"{_f(c['index_items_per_s'], 0)} | {_bytes(c['index_bytes'])} | {_ms(c['encode_ms_p50'])} | "
                    f"{_ms(c['encode_ms_p99'])} | {_ms(c['search_ms_p50'])} | {_ms(c['search_ms_p99'])} | {'; '.join(note)} |"
                )
    indexes = [r for r in rows if r["kind"] == "index"]
    if indexes:
        lines += [
            "",
            "## Index options",
            "",
            "The dense retriever's MiniLM vectors in one FAISS store of each kind over the whole pool. "
            "MMDocIR: each question searches the rows of its own document (a FAISS IDSelector on the "
            "kind's own search; hnsw and ivfpq may then return fewer than k pages: `short`); M2KR: the "
            "whole pool. Encode s: encoding the pages or passages (from the dense row when it ran in "
            "this bench: same texts, same encoder); build: FAISS training and adding; load: reading "
            "the saved store back from disk (median). Queries are encoded one at a time without the "
            "cache.",
            "",
            "| kind | task | items | encode s | build s | build items/s | size | bytes/item | load ms | encode p50 | search p50 | p99 | short |",
            "|---|---|" + "---:|" * 11,
        ]
        for row in indexes:
            for task in TASKS:
                c = row.get(f"{task}_costs")
                if not c:
                    continue
                per_item = c["index_bytes"] / c["items_indexed"] if c["items_indexed"] else None
                lines.append(
                    f"| {row['index_kind']} | {task} | {c['items_indexed']} | {_f(c['encode_seconds'], 2)} | "
                    f"{_f(c['build_seconds'], 3)} | {_count(c['build_items_per_s'])} | {_bytes(c['index_bytes'])} | "
                    f"{_count(per_item)} | {_ms(c['load_ms'])} | {_ms(c['encode_ms_p50'])} | "
                    f"{_ms(c['search_ms_p50'])} | {_ms(c['search_ms_p99'])} | {c['short_rankings']} |"
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
            "| row | " + " | ".join(f"{kd} ({n})" for kd, n in zip(kinds, counts, strict=True)) + " |",
            "|---|" + "---:|" * len(kinds),
        ]
        for row in rows:
            s = row["scores"].get(task) or {}
            bk = s.get("by_kind", {})
            cells = [f"{_f(bk[kd]['score'])} ({_f(bk[kd]['R@1'], 2)})" if kd in bk else "–" for kd in kinds]
            lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)
