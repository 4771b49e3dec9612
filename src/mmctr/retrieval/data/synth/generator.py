"""`generate`: plan both worlds, render their images in worker processes, write every file.

Everything is drawn from generators seeded by (seed, split, item), so one seed gives byte-identical
files whatever the number of workers and in whatever order they finish.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.errors import MMCTRError
from mmctr.outputs import OutputKind, check_out, move_into_place, temp_beside
from mmctr.retrieval.data import formats as F
from mmctr.retrieval.data.synth.config import SCALE_CONFIGS, SCALES, DocScale, PassageScale
from mmctr.retrieval.data.synth.docs import DocSpec, plan_all
from mmctr.retrieval.data.synth.entities import plan_world
from mmctr.retrieval.data.synth.pages import RenderedPage, render_page
from mmctr.retrieval.data.synth.photos import render_entities
from mmctr.retrieval.data.synth.writer import doc_question_id, write_m2kr, write_pages, write_questions
from mmctr.retrieval.data.truth import SUMMARY_FILE, write_truth

OCR_SALT = 0x0C12
ENTITIES_PER_TASK = 32


def _recognise(path: Path) -> bool:
    return path.is_dir() and all((path / n).exists() for n in (f"truth/{SUMMARY_FILE}", "MMDocIR", "M2KR"))


RETRIEVAL_DATA = OutputKind("data root from the Track 1 generator", _recognise)


def _render_doc(task: tuple[DocSpec, tuple[int, int], int, int, int]) -> list[RenderedPage]:
    doc, size, font_size, seed, split = task
    return [
        render_page(p, size, font_size, np.random.default_rng([seed, OCR_SALT, split, doc.index, i]))
        for i, p in enumerate(doc.pages)
    ]


class _Pool:
    """A process pool when there is enough work, else the calling process; same results either way."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = None
        if workers > 1:
            # fork avoids re-importing the package in each worker; any start method gives the same files.
            method = "fork" if "fork" in mp.get_all_start_methods() else None
            self.pool = mp.get_context(method).Pool(workers)

    def imap(self, fn: Callable, tasks: list, ordered: bool = True) -> Iterator:
        if self.pool is None or len(tasks) < 2:
            return map(fn, tasks)
        return self.pool.imap(fn, tasks) if ordered else self.pool.imap_unordered(fn, tasks)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()


def _mmdocir(
    root: Path, scale: DocScale, seed: int, split: int, gold_in_files: bool, pool: _Pool, log
) -> dict:
    docs, questions = plan_all(scale, seed, split)
    log(
        f"  MMDocIR: {len(docs)} documents, {sum(len(d.pages) for d in docs):,} pages, {len(questions)} questions"
    )
    tasks = [(d, scale.page_size, scale.font_size, seed, split) for d in docs]
    n_pages = write_pages(root / F.MMDOCIR_PAGES, docs, pool.imap(_render_doc, tasks))
    write_questions(root / F.MMDOCIR_QUESTIONS, docs, questions, with_gold=gold_in_files)
    rows = [
        {
            "task": "mmdocir",
            "question_id": doc_question_id(i),
            "gold": [str(p) for p in q.gold],
            "kind": q.kind,
            "answer": q.answer,
        }
        for i, q in enumerate(questions)
    ]
    return {
        "rows": rows,
        "counts": {
            "documents": len(docs),
            "pages": n_pages,
            "questions": len(questions),
            "two_gold_questions": sum(len(q.gold) > 1 for q in questions),
            "question_kinds": dict(sorted(Counter(q.kind for q in questions).items())),
            "domains": dict(sorted(Counter(d.domain for d in docs).items())),
        },
    }


def _m2kr(
    root: Path, scale: PassageScale, seed: int, split: int, gold_in_files: bool, pool: _Pool, log
) -> dict:
    entities, passages, queries = plan_world(scale, seed, split)
    log(f"  M2KR: {len(entities):,} entities, {len(passages):,} passages, {len(queries):,} queries")
    shot_dir, query_dir = root / F.M2KR_SCREENSHOTS, root / F.M2KR_QUERY_IMAGES
    shot_dir.mkdir(parents=True, exist_ok=True)
    query_dir.mkdir(parents=True, exist_ok=True)
    texts: dict[int, list[str]] = {}
    for p in passages:
        texts.setdefault(p.entity, []).append(p.text)
    views: dict[int, list[tuple[int, str]]] = {}
    for q in queries:
        views.setdefault(q.entity, []).append((q.view, q.img_path))
    tasks = []
    for lo in range(0, len(entities), ENTITIES_PER_TASK):
        chunk = entities[lo : lo + ENTITIES_PER_TASK]
        tasks.append(
            (
                chunk,
                {e.index: texts[e.index] for e in chunk},
                {e.index: views[e.index] for e in chunk if e.index in views},
                str(shot_dir),
                str(query_dir),
                scale,
                seed,
                split,
            )
        )
    for _ in pool.imap(render_entities, tasks, ordered=False):
        pass
    write_m2kr(root, entities, passages, queries, with_gold=gold_in_files)
    rows = [
        {
            "task": "m2kr",
            "question_id": q.question_id,
            "gold": list(entities[q.entity].passages),
            "kind": q.kind,
            "answer": [entities[q.entity].name],
        }  # fmt: skip
        for q in queries
    ]
    return {
        "rows": rows,
        "counts": {
            "entities": len(entities),
            "look_alike_families": len({e.family for e in entities}),
            "passages": len(passages),
            "queries": len(queries),
            "query_kinds": dict(Counter(q.kind for q in queries)),
            "queried_entities": len({q.entity for q in queries}),
            "two_gold_queries": sum(len(entities[q.entity].passages) > 1 for q in queries),
            "passage_sources": dict(sorted(Counter(p.passage_id.split("_")[0] for p in passages).items())),
        },
    }


def generate(
    out: Path,
    scale: str = "small",
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 2,
) -> dict[str, Any]:
    """Write a Track 1 data root under `out`: `MMDocIR/` and `M2KR/` in the challenge's layout
    (no gold in them), `train/` in the same layout with gold, and `truth/` with the test gold.
    Returns the summary written to truth/summary.json."""
    if scale not in SCALES:
        raise MMCTRError(f"unknown scale {scale!r}; expected one of {list(SCALES)}")
    out = Path(out)
    size = SCALE_CONFIGS[scale]
    check_out(out, RETRIEVAL_DATA, overwrite)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if progress:
            print(f"synth-retrieval {msg}  ({time.perf_counter() - t0:.1f}s)", flush=True)

    tmp = temp_beside(out)
    tmp.mkdir(parents=True)
    pool = _Pool(workers)
    try:
        parts: dict[str, dict] = {}
        for split, (name, sub, docs_scale, psg_scale) in enumerate(
            (("test", "", size.docs, size.passages), ("train", "train", size.train_docs, size.train_passages))
        ):
            root = tmp / sub if sub else tmp
            gold = name == "train"  # the test files carry no gold, as in the challenge
            log(f"[{split + 1}/2] {name} split")
            parts[f"{name}_mmdocir"] = _mmdocir(root / "MMDocIR", docs_scale, seed, split, gold, pool, log)
            parts[f"{name}_m2kr"] = _m2kr(root / "M2KR", psg_scale, seed, split, gold, pool, log)
        summary: dict[str, Any] = {
            "generator": "mmctr.retrieval.data.synth",
            "scale": scale,
            "seed": seed,
            "layout": {
                "mmdocir": [f"MMDocIR/{F.MMDOCIR_QUESTIONS}", f"MMDocIR/{F.MMDOCIR_PAGES}"],
                "m2kr": [
                    f"M2KR/{F.M2KR_QUERIES}",
                    f"M2KR/{F.M2KR_PASSAGES}",
                    f"M2KR/{F.M2KR_QUERY_IMAGES}/",
                    f"M2KR/{F.M2KR_SCREENSHOTS}/",
                ],  # fmt: skip
                "train": "train/ holds the same layout with gold in MMDocIR passage_id and M2KR pos_item_ids",
            },
            "counts": {k: v["counts"] for k, v in parts.items()},
        }
        rows = parts["test_mmdocir"]["rows"] + parts["test_m2kr"]["rows"]
        write_truth(tmp / "truth", rows, summary)
        move_into_place(tmp, out, RETRIEVAL_DATA, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        pool.close()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["out"] = str(out)
    c = summary["counts"]
    log(
        f"done: {out}  MMDocIR {c['test_mmdocir']['pages']:,} pages / {c['test_mmdocir']['questions']} questions, "
        f"M2KR {c['test_m2kr']['passages']:,} passages / {c['test_m2kr']['queries']:,} queries"
    )
    return summary
