"""Reciprocal rank fusion of the other retrievers, weighted per kind of question, behind a gate
of verified image matches.

score(c) = sum over components r of w_r / (rrf_k + rank_r(c)), rank 1-based, over each component's
top `fuse_depth`. RRF needs no score calibration between BM25, cosines and inlier counts. But it
also flattens them: a passage the `match` retriever verified (its photo found in the screenshot by
a plausible homography) would sit barely above the image retriever's second guess. So where
`match` has a weight for the query's kind, its verified passages come first (most inliers first)
and the fusion orders the rest; for unverified passages match's ranking is the image ranking.

Weights (`DEFAULT_WEIGHTS`; never tuned on an evaluated split):
- MMDocIR: BM25 on the VLM text, dense MiniLM at half its weight: the question is text, the page's
  VLM description is the best text of the page; the image retrievers would only repeat dense text.
  The half was chosen on the generator's small TRAIN splits, seeds 0 and 1 (task score, mean of the
  two; dense weight 0 / 0.25 / 0.5 / 0.75 / 1 with BM25 at 1): 0.602 / 0.611 / 0.610 / 0.585 / 0.573.
- M2KR image-only kinds (`image`, `wit`): the query's text is only an instruction shared by every
  query, so text retrievers add noise: verified matches, then the image order.
- M2KR `image_question`: the image names the entity, the question says what is asked about it:
  verified matches first, then the image order fused with the text retrievers at half weight.
  Checked on the same TRAIN splits (image_question score, mean of seeds 0 and 1; BM25 and dense
  both at 0 / 0.25 / 0.5 / 1): 0.920 / 0.950 / 0.962 / 0.964, so half stays.
`hybrid_trained` (`HybridTrainedRetriever`) is the same fusion with the trained two-tower
retriever of a run (option `run`) as one more component of every kind, at weight 1
(`TRAINED_WEIGHT`): an equal vote beside the others, chosen before any evaluation; on M2KR it
orders what the verified matches leave. Plain `hybrid` ignores `run`.
A query whose kind is unknown counts as `image_question` when it has a question, else `image`.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmctr.errors import ConfigError
from mmctr.retrieval.data.types import M2KR_KINDS, DocSet, PassageSet
from mmctr.retrieval.retrievers.base import Retriever, check_k, new_timings, stopwatch
from mmctr.retrieval.retrievers.bm25 import BM25Retriever
from mmctr.retrieval.retrievers.dense import DenseRetriever
from mmctr.retrieval.retrievers.match import MatchRetriever

COMPONENTS = ("bm25", "dense", "image", "match", "trained")
KINDS = ("mmdocir", *M2KR_KINDS)

DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "mmdocir": {"bm25": 1.0, "dense": 0.5},
    "image": {"match": 1.0},
    "wit": {"match": 1.0},
    "image_question": {"match": 1.0, "bm25": 0.5, "dense": 0.5},
}

TRAINED_WEIGHT = 1.0


def rrf(rankings: dict[str, Sequence[str]], weights: dict[str, float], k0: float) -> list[str]:
    """Fuse ranked id lists (best first) by weighted reciprocal rank. Ties go to the id seen first
    when the rankings are read component by component, in the order given."""
    score: dict[str, float] = {}
    first: dict[str, int] = {}
    for name, ranked in rankings.items():
        w = weights.get(name, 0.0)
        for rank, cid in enumerate(ranked, start=1):
            first.setdefault(cid, len(first))
            if w:
                score[cid] = score.get(cid, 0.0) + w / (k0 + rank)
    return sorted(first, key=lambda c: (-score.get(c, 0.0), first[c]))


def first_unique(ids: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    return [c for c in ids if not (c in seen or seen.add(c))]


def _check_weights(weights: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    for kind, ws in weights.items():
        if kind not in KINDS:
            raise ConfigError(f"hybrid weights: unknown query kind {kind!r}; expected one of {KINDS}")
        for name, w in ws.items():
            if name not in COMPONENTS:
                raise ConfigError(
                    f"hybrid weights[{kind!r}]: unknown retriever {name!r}; expected one of {COMPONENTS}"
                )
            if float(w) < 0:
                raise ConfigError(f"hybrid weights[{kind!r}][{name!r}] = {w}: weights must be >= 0")
    return {kind: {**DEFAULT_WEIGHTS.get(kind, {}), **ws} for kind, ws in weights.items()} | {
        kind: ws for kind, ws in DEFAULT_WEIGHTS.items() if kind not in weights
    }


def query_kind(kind: str, question: str) -> str:
    if kind in M2KR_KINDS:
        return kind
    return "image_question" if question else "image"


class HybridRetriever(Retriever):
    name = "hybrid"

    with_trained = False  # HybridTrainedRetriever: the trained run joins every kind

    def __init__(self, options=None):
        super().__init__(options)
        given = self.options.weights or {}
        if self.with_trained:
            if self.options.run is None:
                raise ConfigError(
                    f"retriever {self.name!r} needs a run directory: pass --run RUN (written by `mmctr retrieval train`)"
                )
            given = {kd: {"trained": TRAINED_WEIGHT, **given.get(kd, {})} for kd in KINDS} | {
                kd: ws for kd, ws in given.items() if kd not in KINDS
            }
        self.weights = _check_weights(given)
        self.bm25 = BM25Retriever(self.options)
        self.dense = DenseRetriever(self.options)
        self.match = MatchRetriever(self.options)
        self._trained = None
        self.parts: dict[str, dict] = {}  # each component's timings of the last call

    @property
    def trained(self):
        if self._trained is None:
            from mmctr.retrieval.retrievers.trained import TrainedRetriever

            self._trained = TrainedRetriever(self.options)  # its ConfigError says a run is needed
        return self._trained

    def _used(self, kinds: Sequence[str]) -> list[str]:
        return [c for c in COMPONENTS if any(self.weights[kd].get(c, 0) > 0 for kd in kinds)]

    def _combine(self, task: str, parts: dict[str, dict], n: int, fuse_ms: list[float]) -> None:
        """Timings of the fusion: every used component's costs added up, per query too."""
        t = self.timings = new_timings(task)
        self.parts = parts
        distinct = {id(p): p for p in parts.values()}.values()  # image and match share one index
        t["index_seconds"] = sum(p["index_seconds"] for p in distinct)
        t["index_bytes"] = sum(p["index_bytes"] for p in distinct)
        t["items_indexed"] = max((p["items_indexed"] for p in distinct), default=0)
        t["from_cache"] = sum(p["from_cache"] for p in distinct)
        t["load_seconds"] = sum(p.get("load_seconds", 0.0) for p in distinct)
        t["encode_ms"] = [sum(p["encode_ms"][i] for p in distinct) for i in range(n)]
        t["search_ms"] = [sum(p["search_ms"][i] for p in distinct) + fuse_ms[i] for i in range(n)]
        t["components"] = sorted(parts)

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        depth = max(k, self.options.fuse_depth)
        used = self._used(["mmdocir"])
        if not used:
            raise ConfigError("hybrid weights['mmdocir'] are all zero: nothing to fuse")
        runs: dict[str, dict[str, list[str]]] = {}
        parts: dict[str, dict] = {}
        for name in used:
            r = {"bm25": self.bm25, "dense": self.dense, "image": self.match.image, "match": self.match}.get(
                name
            )
            r = r or self.trained
            runs[name] = r.rank_docs(docs, depth)
            parts[name] = r.timings
        w = self.weights["mmdocir"]
        out: dict[str, list[str]] = {}
        fuse_ms: list[float] = []
        for q in docs.questions:
            with stopwatch() as took:
                out[q.question_id] = rrf({c: runs[c][q.question_id] for c in used}, w, self.options.rrf_k)[:k]
            fuse_ms.append(took[0] * 1000)
        self._combine("docs", parts, len(docs.questions), fuse_ms)
        return out

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        depth = max(k, self.options.fuse_depth)
        kinds = [query_kind(q.kind, q.question) for q in ps.queries]
        used = self._used(sorted(set(kinds)))
        if not used:
            raise ConfigError(
                f"hybrid weights for query kinds {sorted(set(kinds))} are all zero: nothing to fuse"
            )
        ids = ps.passages.passage_id
        runs: dict[str, dict[str, list[str]]] = {}
        parts: dict[str, dict] = {}
        if "match" in used:
            rows = self.match.passage_rows(ps, depth)
            runs["match"] = {q: [ids[i] for i in r] for q, r in rows.items()}
            parts["match"] = self.match.timings
            if "image" in used:  # the image ranking match started from: no second image index
                runs["image"] = {q: [ids[i] for i in r[:depth]] for q, r in self.match.image_rows.items()}
                parts["image"] = self.match.timings
        elif "image" in used:
            runs["image"] = self.match.image.rank_passages(ps, depth)
            parts["image"] = self.match.image.timings
        for name in ("bm25", "dense", "trained"):
            if name in used:
                r = self.trained if name == "trained" else getattr(self, name)
                runs[name] = r.rank_passages(ps, depth)
                parts[name] = r.timings
        out: dict[str, list[str]] = {}
        fuse_ms: list[float] = []
        for q, kind in zip(ps.queries, kinds, strict=True):
            with stopwatch() as took:
                w = self.weights[kind]
                comps = {c: runs[c][q.question_id] for c in COMPONENTS if c in runs and w.get(c, 0) > 0}
                gate = [ids[i] for i in self.match.verified[q.question_id]] if "match" in comps else []
                rest = rrf(comps, w, self.options.rrf_k)
                out[q.question_id] = first_unique(gate + rest)[:k]
            fuse_ms.append(took[0] * 1000)
        self._combine("passages", parts, len(ps.queries), fuse_ms)
        return out


class HybridTrainedRetriever(HybridRetriever):
    name = "hybrid_trained"
    with_trained = True
