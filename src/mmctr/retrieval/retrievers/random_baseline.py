"""The floor every table needs: a seeded random order of each question's candidates.

Each question's order depends only on (seed, task, question id), so it does not change when other
questions are added or reordered.
"""

from __future__ import annotations

import numpy as np

from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import (
    Retriever,
    check_k,
    doc_candidates,
    new_timings,
    stable_seed,
    stopwatch,
)


class RandomRetriever(Retriever):
    name = "random"

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("docs")
        rows = doc_candidates(docs)
        t["items_indexed"] = len(docs.pages)
        out: dict[str, list[str]] = {}
        for q in docs.questions:
            t["encode_ms"].append(0.0)
            with stopwatch() as took:
                cand = rows[q.doc_name]
                rng = np.random.default_rng(stable_seed(self.options.seed, "docs", q.question_id))
                pick = rng.permutation(len(cand))[:k]
                out[q.question_id] = [docs.pages.page_id[cand[i]] for i in pick]
            t["search_ms"].append(took[0] * 1000)
        return out

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("passages")
        n = len(ps.passages)
        t["items_indexed"] = n
        ids = ps.passages.passage_id
        out: dict[str, list[str]] = {}
        for q in ps.queries:
            t["encode_ms"].append(0.0)
            with stopwatch() as took:
                rng = np.random.default_rng(stable_seed(self.options.seed, "passages", q.question_id))
                # k distinct rows without shuffling the whole pool
                pick = rng.choice(n, size=min(k, n), replace=False)
                out[q.question_id] = [ids[i] for i in pick]
            t["search_ms"].append(took[0] * 1000)
        return out
