"""Dense text retrieval: the bundled MiniLM (or any Task-1 text encoder), L2-normalised vectors,
dot product.

Pages (their `doc_text`: VLM description by default) and passages are encoded in batches through
Task 1's content-keyed embedding cache, so a second run over the same texts only reads vectors.
Queries are encoded one at a time, each timed. M2KR image-only queries have only their
instruction as text, so their ranking is close to arbitrary (the image retrievers answer those).
"""

from __future__ import annotations

import numpy as np

from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import (
    Retriever,
    TextEmbedder,
    check_k,
    doc_candidates,
    new_timings,
    page_texts,
    query_text,
    stopwatch,
    top_k,
)


class DenseRetriever(Retriever):
    name = "dense"

    def __init__(self, options=None):
        super().__init__(options)
        self._embedder: TextEmbedder | None = None

    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = TextEmbedder(self.options)
        return self._embedder

    def doc_scores(self, docs: DocSet) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
        """question_id -> scores of its document's pages (in page order), and doc -> page rows.
        Fills `timings`; used by the image retrievers as their MMDocIR fallback too."""
        t = self.timings = new_timings("docs")
        t["doc_text"] = self.options.doc_text
        rows = doc_candidates(docs)
        loaded = self.embedder.load_seconds
        with stopwatch() as took:
            pages = self.embedder.items(page_texts(docs.pages, self.options.doc_text))
        t["load_seconds"] = self.embedder.load_seconds - loaded
        t["index_seconds"] = took[0] - t["load_seconds"]
        t["items_indexed"] = len(docs.pages)
        t["index_bytes"] = int(pages.matrix.nbytes)
        queries = self.embedder.queries([q.question for q in docs.questions])
        t["load_seconds"] = self.embedder.load_seconds - loaded
        t["from_cache"] = pages.from_cache + queries.from_cache
        t["encode_ms"] = list(queries.encode_ms)
        out: dict[str, np.ndarray] = {}
        for i, q in enumerate(docs.questions):
            with stopwatch() as search:
                out[q.question_id] = pages.matrix[rows[q.doc_name]] @ queries.matrix[i]  # (n_pages,)
            t["search_ms"].append(search[0] * 1000)
        return out, rows

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        scores, rows = self.doc_scores(docs)
        out: dict[str, list[str]] = {}
        for i, q in enumerate(docs.questions):
            with stopwatch() as took:
                cand = np.asarray(rows[q.doc_name])
                best = cand[top_k(scores[q.question_id], k)]
            self.timings["search_ms"][i] += took[0] * 1000
            out[q.question_id] = [docs.pages.page_id[r] for r in best]
        return out

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("passages")
        loaded = self.embedder.load_seconds
        with stopwatch() as took:
            passages = self.embedder.items([x or "" for x in ps.passages.text])
        t["load_seconds"] = self.embedder.load_seconds - loaded
        t["index_seconds"] = took[0] - t["load_seconds"]
        t["items_indexed"] = len(ps.passages)
        t["index_bytes"] = int(passages.matrix.nbytes)
        queries = self.embedder.queries([query_text(q, self.options.query_instruction) for q in ps.queries])
        t["load_seconds"] = self.embedder.load_seconds - loaded
        t["from_cache"] = passages.from_cache + queries.from_cache
        t["encode_ms"] = list(queries.encode_ms)
        ids = ps.passages.passage_id
        out: dict[str, list[str]] = {}
        for i, q in enumerate(ps.queries):
            with stopwatch() as search:
                best = top_k(passages.matrix @ queries.matrix[i], k)  # (n_passages,) scores
            out[q.question_id] = [ids[j] for j in best]
            t["search_ms"].append(search[0] * 1000)
        return out
