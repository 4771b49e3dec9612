"""The trained two-tower retriever (`mmctr retrieval train --out RUN`), as a retriever.

It reads the run named by `options.run`, computes the frozen features of the candidates with the
encoder options the run was trained with (they override the caller's), projects them once (the
index), then scores each question against every candidate of its task: the pages of its own
document for MMDocIR, the whole pool for M2KR. See `mmctr.retrieval.trained.model` for the score.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmctr.errors import ConfigError
from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import Retriever, TextEmbedder, check_k, new_timings, stopwatch, top_k


class TrainedRetriever(Retriever):
    name = "trained"

    def __init__(self, options=None):
        super().__init__(options)
        if self.options.run is None:
            raise ConfigError(
                "retriever 'trained' needs a run directory: pass --run RUN (written by `mmctr retrieval train`)"
            )
        from mmctr.retrieval.trained.train import load_run

        self.model, self.run_info = load_run(self.options.run)
        recorded = dict(self.run_info.get("retriever_options", {}))
        if "crop_grids" in recorded:
            recorded["crop_grids"] = tuple(recorded["crop_grids"])
        self.options = dataclasses.replace(self.options, **recorded)
        self._text: TextEmbedder | None = None

    @property
    def text(self) -> TextEmbedder:
        if self._text is None:
            self._text = TextEmbedder(self.options)
        return self._text

    def _fill(self, task: str, took: float, n_items: int, encode_ms: list[float], nbytes: int) -> None:
        t = self.timings = new_timings(task)
        t["load_seconds"] = self.text.load_seconds
        # the features pass encodes the questions too; their measured encoding is not index time
        t["index_seconds"] = max(0.0, took - t["load_seconds"] - sum(encode_ms) / 1000)
        t["items_indexed"] = n_items
        t["index_bytes"] = nbytes
        t["encode_ms"] = list(encode_ms)
        t["run"] = str(self.options.run)

    def doc_scores(self, docs: DocSet) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
        """(question ids, candidate page rows, scores) per question. Fills `timings` but search_ms."""
        from mmctr.retrieval.trained.features import doc_features
        from mmctr.retrieval.trained.train import DocScorer

        with stopwatch() as took:
            f = doc_features(docs, self.options, self.text)
            scorer = DocScorer(self.model, f)
        nbytes = int(scorer.vlm.numel() * 4 + scorer.ocr.numel() * 4)
        self._fill("docs", took[0], len(docs.pages), f.encode_ms, nbytes)
        scores = []
        for i in range(len(f.question_ids)):
            with stopwatch() as search:
                scores.append(scorer.scores(i))
            self.timings["search_ms"].append(search[0] * 1000)
        return f.question_ids, f.cands, scores

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        qids, cands, scores = self.doc_scores(docs)
        out: dict[str, list[str]] = {}
        for i, qid in enumerate(qids):
            with stopwatch() as took:
                best = cands[i][top_k(scores[i], k)]
            self.timings["search_ms"][i] += took[0] * 1000
            out[qid] = [docs.pages.page_id[r] for r in best]
        return out

    def passage_rows(self, ps: PassageSet, depth: int) -> dict[str, np.ndarray]:
        from mmctr.retrieval.trained.features import passage_features
        from mmctr.retrieval.trained.train import PassageScorer

        with stopwatch() as took:
            f = passage_features(ps, self.options, self.text)
            scorer = PassageScorer(self.model, f)
        self._fill("passages", took[0], len(ps.passages), f.encode_ms, scorer.nbytes() + f.bm25.nbytes())
        out: dict[str, np.ndarray] = {}
        for i, qid in enumerate(f.question_ids):
            with stopwatch() as search:
                out[qid] = top_k(scorer.scores(i), depth)
            self.timings["search_ms"].append(search[0] * 1000)
        return out

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        ids = ps.passages.passage_id
        return {qid: [ids[r] for r in rows] for qid, rows in self.passage_rows(ps, k).items()}
