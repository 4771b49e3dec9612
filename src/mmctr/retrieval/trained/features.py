"""What the trained retriever's towers read: frozen encoder outputs, computed once and cached.

Per question and candidate the towers compare fields:

- MMDocIR (question -> pages of its document): MiniLM vectors of the question and of the page's
  VLM text and OCR text (`dense_vlm`, `dense_ocr`), and the BM25 inner products of the question's
  terms with the page's term weights for both texts (`sparse_vlm`, `sparse_ocr`; IDF over the
  question's own document, as `bm25` does).
- M2KR (photo, question -> passages of the pool): MiniLM of the query text vs the passage text
  (`dense_passage`), BM25 of the same (`sparse_passage`), and the query photo's EfficientNet
  vector against the region (window) vectors of the passage's screenshot (`image`, MaxSim over
  the windows, after the trained image projection).

The page images of MMDocIR are not a field: their questions are text, and with frozen encoders
the only bridge from MiniLM's space to EfficientNet's would be a map learnt from a few hundred
questions; the pages' VLM text already describes their charts and figures.

Everything here is frozen: encoders come from the same content-keyed cache the untrained
retrievers use, so training, scoring and the bench encode each page, passage and window once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import (
    RetrieverOptions,
    TextEmbedder,
    doc_candidates,
    page_texts,
    query_text,
)
from mmctr.retrieval.retrievers.bm25 import _Index, _query_tokens

DOC_FIELDS = ("dense_vlm", "dense_ocr", "sparse_vlm", "sparse_ocr")
PASSAGE_FIELDS = ("dense_passage", "sparse_passage", "image")
FIELDS = DOC_FIELDS + PASSAGE_FIELDS
# BM25 scores run to ~20 for a long question; this brings them near the cosines' range before the
# query tower's field weights (learnt) scale them.
SPARSE_SCALE = 0.1


@dataclass
class DocFeatures:
    """MMDocIR part, frozen. Rows of `pages_*` are page rows of the DocSet."""

    question_ids: list[str]
    q_text: np.ndarray  # (Q, Dt) L2-normalised question vectors
    pages_vlm: np.ndarray  # (P, Dt)
    pages_ocr: np.ndarray  # (P, Dt)
    cands: list[np.ndarray]  # per question: its document's page rows (n_c,)
    sparse_vlm: list[np.ndarray]  # per question: BM25 of the question vs each candidate's VLM text (n_c,)
    sparse_ocr: list[np.ndarray]
    gold: list[np.ndarray] | None  # per question: bool mask over cands, when gold is known
    encode_ms: list[float]  # per question, encoding its text (MiniLM + tokenising)


@dataclass
class PassageFeatures:
    """M2KR part, frozen. Window rows are grouped by passage (`owner` is non-decreasing)."""

    question_ids: list[str]
    q_text: np.ndarray  # (Q, Dt)
    has_question: np.ndarray  # (Q,) bool
    q_photo: np.ndarray  # (Q, Di) centred on the windows' mean, L2-normalised; zeros when no photo
    has_photo: np.ndarray  # (Q,) bool
    p_text: np.ndarray  # (P, Dt)
    windows: np.ndarray  # (W, Di) centred, L2-normalised
    owner: np.ndarray  # (W,) passage row of each window
    texts: list[str]  # the passage texts (BM25's side)
    bm25: _Index  # over the passage texts
    q_tokens: list[list[str]]
    gold: list[np.ndarray] | None  # per question: passage rows of its gold
    encode_ms: list[float]


def doc_features(docs: DocSet, options: RetrieverOptions, text: TextEmbedder | None = None) -> DocFeatures:
    text = text or TextEmbedder(options)
    rows = doc_candidates(docs)
    vlm_texts, ocr_texts = page_texts(docs.pages, "vlm"), page_texts(docs.pages, "ocr")
    vlm = text.items(vlm_texts).matrix
    ocr = text.items(ocr_texts).matrix
    queries = text.queries([q.question for q in docs.questions])
    indexes = {
        d: (_Index([vlm_texts[r] for r in rs]), _Index([ocr_texts[r] for r in rs])) for d, rs in rows.items()
    }
    cands, s_vlm, s_ocr, gold = [], [], [], []
    row_of = {(docs.pages.doc_name[r], docs.pages.page_id[r]): r for r in range(len(docs.pages))}
    for q in docs.questions:
        tokens = _query_tokens(q.question)
        iv, io = indexes[q.doc_name]
        cands.append(np.asarray(rows[q.doc_name], dtype=np.int64))
        s_vlm.append(iv.scores(tokens) * SPARSE_SCALE)
        s_ocr.append(io.scores(tokens) * SPARSE_SCALE)
        if docs.gold is not None:
            g = {row_of.get((q.doc_name, p)) for p in docs.gold.get(q.question_id, [])}
            gold.append(np.isin(cands[-1], [r for r in g if r is not None]))
    return DocFeatures(
        question_ids=[q.question_id for q in docs.questions],
        q_text=queries.matrix,
        pages_vlm=vlm,
        pages_ocr=ocr,
        cands=cands,
        sparse_vlm=s_vlm,
        sparse_ocr=s_ocr,
        gold=gold if docs.gold is not None else None,
        encode_ms=list(queries.encode_ms),
    )


def passage_features(
    ps: PassageSet, options: RetrieverOptions, text: TextEmbedder | None = None
) -> PassageFeatures:
    from mmctr.retrieval.retrievers.image import ImageRetriever

    text = text or TextEmbedder(options)
    p_text = text.items([x or "" for x in ps.passages.text]).matrix
    qtexts = [query_text(q, options.query_instruction) for q in ps.queries]
    queries = text.queries(qtexts)
    image = ImageRetriever(options)
    raw, owner, center, _ = image.index_passages(ps)
    windows = raw - center
    windows /= np.linalg.norm(windows, axis=1, keepdims=True) + 1e-12
    if len(owner):
        q_photo, photo_ms, _ = image.query_vectors(ps, center)
    else:
        q_photo, photo_ms = np.zeros((len(ps.queries), raw.shape[1]), np.float32), [0.0] * len(ps.queries)
    has_photo = np.array([q.image_path is not None for q in ps.queries], dtype=bool)
    row_of = {p: i for i, p in enumerate(ps.passages.passage_id)}
    gold = None
    if ps.gold is not None:
        gold = [
            np.array([row_of[p] for p in ps.gold.get(q.question_id, []) if p in row_of], np.int64)
            for q in ps.queries
        ]
    return PassageFeatures(
        question_ids=[q.question_id for q in ps.queries],
        q_text=queries.matrix,
        has_question=np.array([bool(q.question) for q in ps.queries], dtype=bool),
        q_photo=q_photo.astype(np.float32),
        has_photo=has_photo,
        p_text=p_text,
        windows=windows.astype(np.float32),
        owner=owner,
        texts=[x or "" for x in ps.passages.text],
        bm25=_Index([x or "" for x in ps.passages.text]),
        q_tokens=[_query_tokens(t) for t in qtexts],
        gold=gold,
        encode_ms=[a + b for a, b in zip(queries.encode_ms, photo_ms, strict=True)],
    )
