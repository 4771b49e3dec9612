"""The single-vector student of `mmctr retrieval distill --out RUN`, as a retriever.

It reads the run named by `options.run` (the token options it was distilled with override the
caller's), reads each candidate's MiniLM token vectors from the late retriever's token cache (or
encodes them), and pools them once through the student into one 384-d float32 vector per page or
passage: the index. A question's token vectors go through the query tower (timed with its encoding);
the search is one inner product per candidate. See `mmctr.retrieval.trained.distill` for the model.

M2KR image-only queries carry only an instruction as text: they get the `image` retriever's
ranking, stated in `timings["fallback"]`, as `late` does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mmctr.errors import ConfigError
from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import (
    Retriever,
    check_k,
    doc_candidates,
    new_timings,
    page_texts,
    query_text,
    stopwatch,
    top_k,
)
from mmctr.retrieval.retrievers.image import rank_image_only
from mmctr.retrieval.retrievers.late import FALLBACK, TokenEncoder


class DistilledRetriever(Retriever):
    name = "distilled"

    def __init__(self, options=None):
        super().__init__(options)
        if self.options.run is None:
            raise ConfigError(
                "retriever 'distilled' needs a run directory: pass --run RUN (written by `mmctr retrieval distill`)"
            )
        from mmctr.retrieval.trained.distill import TOKEN_OPTIONS, load_student

        self.model, self.run_info = load_student(self.options.run)
        recorded = dict(self.run_info.get("retriever_options", {}))
        self.options = dataclasses.replace(
            self.options, **{k: recorded[k] for k in TOKEN_OPTIONS if k in recorded}
        )
        self._encoder: TokenEncoder | None = None
        self._image: Any = None

    @property
    def encoder(self) -> TokenEncoder:
        if self._encoder is None:
            self._encoder = TokenEncoder(self.options)
        return self._encoder

    @property
    def image(self) -> Any:
        if self._image is None:
            from mmctr.retrieval.retrievers.image import ImageRetriever

            self._image = ImageRetriever(self.options)
        return self._image

    def index(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """((n, D) float32 unit candidate vectors, how many token matrices came from the cache)."""
        from mmctr.retrieval.trained.distill import Tokens, encode_all

        tv = self.encoder.items(texts)
        tokens = Tokens.of(tv.mats, self.model.config.dim)
        return encode_all(self.model.candidates, tokens).numpy(), tv.from_cache

    def query_vectors(self, texts: list[str]) -> tuple[np.ndarray, list[float], int]:
        """((q, D) query vectors, ms per query: token encoding (a cache read when cached) plus the
        query tower, how many came from the cache)."""
        import torch

        from mmctr.retrieval.trained.distill import Tokens

        tv = self.encoder.queries(texts)
        ms = list(tv.encode_ms or [0.0] * len(texts))
        out = np.zeros((len(texts), self.model.config.dim), dtype=np.float32)
        with torch.no_grad():
            for i, m in enumerate(tv.mats):
                with stopwatch() as took:
                    t = Tokens.of([m], self.model.config.dim)
                    out[i] = self.model.queries(t.rows, torch.zeros(len(t.rows), dtype=torch.long), 1)[0]
                ms[i] += took[0] * 1000
        return out, ms, tv.from_cache

    def _fill_index(self, t: dict[str, Any], vectors: np.ndarray, seconds: float, loaded: float) -> None:
        t["load_seconds"] = self.encoder.load_seconds - loaded
        t["index_seconds"] = seconds - t["load_seconds"]
        t["items_indexed"] = int(vectors.shape[0])
        t["index_bytes"] = int(vectors.nbytes)
        t["vector_bytes"] = int(vectors.nbytes)  # the student's vectors alone (M2KR adds the image windows)
        t["run"] = str(self.options.run)
        t["teacher"] = self.run_info.get("teacher")

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("docs")
        t["doc_text"] = self.options.doc_text
        rows = doc_candidates(docs)
        texts = page_texts(docs.pages, self.options.doc_text)
        loaded = self.encoder.load_seconds
        with stopwatch() as took:
            vectors, cached = self.index(texts)  # (P, D), page rows of the DocSet
        self._fill_index(t, vectors, took[0], loaded)
        queries, ms, q_cached = self.query_vectors([q.question for q in docs.questions])
        t["load_seconds"] = self.encoder.load_seconds - loaded
        t["from_cache"] = cached + q_cached
        t["encode_ms"] = ms
        out: dict[str, list[str]] = {}
        for i, q in enumerate(docs.questions):
            with stopwatch() as search:
                cand = np.asarray(rows[q.doc_name])
                best = cand[top_k(vectors[cand] @ queries[i], k)]  # scores (n_pages,)
            out[q.question_id] = [docs.pages.page_id[r] for r in best]
            t["search_ms"].append(search[0] * 1000)
        return out

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("passages")
        n = len(ps.queries)
        with_text = [i for i, q in enumerate(ps.queries) if q.question]
        image_only = [i for i, q in enumerate(ps.queries) if not q.question]
        ids = ps.passages.passage_id
        loaded = self.encoder.load_seconds
        with stopwatch() as took:
            vectors, cached = self.index([x or "" for x in ps.passages.text])  # (P, D)
        self._fill_index(t, vectors, took[0], loaded)
        encode_ms, search_ms = [0.0] * n, [0.0] * n
        ranked: dict[int, list[str]] = {}
        t["from_cache"] = cached
        if with_text:
            queries, ms, q_cached = self.query_vectors(
                [query_text(ps.queries[i], self.options.query_instruction) for i in with_text]
            )
            t["from_cache"] += q_cached
            for j, i in enumerate(with_text):
                encode_ms[i] = ms[j]
                with stopwatch() as search:
                    best = top_k(vectors @ queries[j], k)  # scores (P,)
                ranked[i] = [ids[r] for r in best]
                search_ms[i] = search[0] * 1000
        t["load_seconds"] = self.encoder.load_seconds - loaded
        if image_only:
            rank_image_only(self.image, ps, image_only, k, ranked, encode_ms, search_ms, t)
            t["fallback"] = FALLBACK.format(n=len(image_only), total=n)
        t["encode_ms"], t["search_ms"] = encode_ms, search_ms
        return {q.question_id: ranked[i] for i, q in enumerate(ps.queries)}
