"""Track 1 retrievers: one file each, one registry.

Every retriever answers both sub-tasks (`rank_docs` for MMDocIR pages inside the question's own
document, `rank_passages` for M2KR passages of the whole pool) and fills `timings` after each
call. Build one by name:

    >>> from mmctr.retrieval.retrievers import build_retriever
    >>> build_retriever("bm25").name
    'bm25'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from mmctr.errors import ConfigError
from mmctr.retrieval.retrievers.base import Retriever, RetrieverOptions
from mmctr.retrieval.retrievers.bm25 import BM25Retriever
from mmctr.retrieval.retrievers.clip import CLIPRetriever
from mmctr.retrieval.retrievers.colpali import ColPaliRetriever
from mmctr.retrieval.retrievers.dense import DenseRetriever
from mmctr.retrieval.retrievers.distilled import DistilledRetriever
from mmctr.retrieval.retrievers.hybrid import HybridRetriever, HybridTrainedRetriever
from mmctr.retrieval.retrievers.image import ImageRetriever
from mmctr.retrieval.retrievers.late import LateInteractionRetriever, late_builder
from mmctr.retrieval.retrievers.match import MatchRetriever
from mmctr.retrieval.retrievers.random_baseline import RandomRetriever
from mmctr.retrieval.retrievers.trained import TrainedRetriever

__all__ = [
    "RETRIEVERS",
    "Retriever",
    "RetrieverEntry",
    "RetrieverOptions",
    "build_retriever",
    "list_retrievers",
]


@dataclass(frozen=True)
class RetrieverEntry:
    about: str
    build: Callable[[RetrieverOptions], Retriever]


def _bm25_ocr(options: RetrieverOptions) -> Retriever:
    return BM25Retriever(dataclasses.replace(options, doc_text="ocr"))


RETRIEVERS: dict[str, RetrieverEntry] = {
    "bm25": RetrieverEntry(
        "BM25 (bm25s) on page text (option doc_text: vlm | ocr | both; default vlm) and on passage "
        "text with question + instruction; weak on image-only queries (their text is the instruction)",
        BM25Retriever,
    ),
    "bm25_ocr": RetrieverEntry(
        "BM25 on the pages' OCR text (bm25 with doc_text=ocr), the classic baseline", _bm25_ocr
    ),
    "dense": RetrieverEntry(
        "bundled MiniLM text vectors, cosine; page text per doc_text, passage text; cached by content",
        DenseRetriever,
    ),
    "image": RetrieverEntry(
        "EfficientNet-Lite0 features of the query photo vs windows of each passage screenshot (max "
        "cosine); MMDocIR falls back to dense text (an image model cannot read the question)",
        ImageRetriever,
    ),
    "match": RetrieverEntry(
        "SIFT keypoints (option local_features=orb for ORB) + ratio test + RANSAC similarity inliers of "
        "the query photo inside the screenshots of the image retriever's top match_candidates; "
        "MMDocIR falls back to dense text",
        MatchRetriever,
    ),
    "hybrid": RetrieverEntry(
        "verified matches first, then weighted reciprocal rank fusion per query kind: MMDocIR bm25 + "
        "half-weight dense; M2KR image-only: match (image order below the verified); image+question: "
        "match + half-weight bm25 and dense",
        HybridRetriever,
    ),
    "trained": RetrieverEntry(
        "the two-tower retriever of a run of `mmctr retrieval train` (option run / --run RUN): "
        "learnt field weights per query over MiniLM text, BM25 terms and EfficientNet screenshot regions",
        TrainedRetriever,
    ),
    "hybrid_trained": RetrieverEntry(
        "hybrid with the trained run (--run RUN) as one more fused component of every query kind, at weight 1",
        HybridTrainedRetriever,
    ),
    "late": RetrieverEntry(
        "ColBERT-style MaxSim over MiniLM token vectors (float16, long pages as overlapping 256-token "
        "chunks); page text per doc_text, passage text; M2KR image-only queries fall back to image",
        LateInteractionRetriever,
    ),
    "late_pool": RetrieverEntry(
        "late with token pooling to at most 40% of the vectors: one Ward merge height for the whole "
        "pool (near-duplicate tokens merge first, wherever they are), cluster means kept",
        late_builder(2.5, "global"),
    ),
    "late_pool3": RetrieverEntry(
        "late with token pooling: each candidate's vectors Ward-clustered to at most a third, means kept",
        late_builder(3),
    ),
    "distilled": RetrieverEntry(
        "the single-vector student of a run of `mmctr retrieval distill` (option run / --run RUN): "
        "attention-pooled MiniLM token vectors, one float32 vector per page or passage, trained to "
        "rank as late does; M2KR image-only queries fall back to image",
        DistilledRetriever,
    ),
    "clip": RetrieverEntry(
        "CLIP by hub name or local directory (option image_encoder or text_encoder = clip:NAME_OR_PATH; "
        "default clip:openai/clip-vit-base-patch32): MMDocIR question text vs page images; M2KR query "
        "photo vs screenshot windows, plus question vs passage text",
        CLIPRetriever,
    ),
    "colpali": RetrieverEntry(
        "ColPali / ColQwen2 late interaction (option image_encoder = colpali:NAME_OR_PATH or "
        "colqwen:NAME_OR_PATH; default colpali:vidore/colpali-v1.3; -hf checkpoints load with "
        "transformers, others need colpali-engine): question vs page images / screenshots; M2KR "
        "image-only queries fall back to the image retriever",
        ColPaliRetriever,
    ),
    "random": RetrieverEntry("seeded random order of the candidates (the floor)", RandomRetriever),
}


def build_retriever(name: str, options: RetrieverOptions | None = None) -> Retriever:
    """The retriever registered as `name`. Loads no model yet (that happens on first use)."""
    entry = RETRIEVERS.get(name)
    if entry is None:
        raise ConfigError(f"retriever {name!r} unknown; available: {', '.join(RETRIEVERS)}")
    retriever = entry.build(options or RetrieverOptions())
    retriever.name = name
    return retriever


def list_retrievers() -> list[tuple[str, str]]:
    return [(name, e.about) for name, e in RETRIEVERS.items()]
