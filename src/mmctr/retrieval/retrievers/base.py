"""What every Track-1 retriever shares: options, the base class, timings, deterministic top-k,
reading query and page texts, reading image files with named errors, and cached text encoding.

A retriever answers both sub-tasks:
- `rank_docs(docs, k)`: for each MMDocIR question, the top-k page ids among the pages of the
  question's own document (all of them, ranked, when the document has fewer than k pages);
- `rank_passages(ps, k)`: for each M2KR query, the top-k passage ids of the whole passage pool.

After each call `timings` describes that call (see `new_timings`), so a benchmark reads it between
the two calls.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.errors import ConfigError, DataError
from mmctr.retrieval.data.types import DocPages, DocSet, ImageQuery, PassageSet

DOC_TEXTS = ("vlm", "ocr", "both")


@dataclass
class RetrieverOptions:
    """Options of every retriever; each reads the ones it needs. Unknown keys in `from_dict` are an
    error, so a typo does not pass silently."""

    doc_text: str = "vlm"  # MMDocIR page text: vlm (VLM description) | ocr | both (concatenated)
    # MMDocIR BM25 statistics (IDF, mean length): over the question's own document or the whole page
    # pool. On the generator's train split neither won across seeds (bm25.py has the numbers).
    bm25_scope: str = "document"
    query_instruction: bool = True  # M2KR: add the query's instruction to its question text
    text_encoder: str = "minilm"  # mmctr.encoders spec
    image_encoder: str = "effnet"
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    # Image encoder input side. Windows hold 100-300 px of the page, so 128 keeps their detail at a
    # quarter of the cost of the native 224 (92 vs 24 windows/s on one core, docs/benchmarks/embeddings.md).
    image_size: int | None = 128
    cache_dir: Path | None = None  # None: $MMCTR_CACHE or ~/.cache/mmctr
    use_cache: bool = True
    crop_grids: tuple[int, ...] = (1, 2, 3)  # image: whole page + 2x2 + 3x3 square windows
    match_candidates: int = 50  # match: re-rank this many of the image retriever's top passages
    local_features: str = "sift"  # match: sift | orb (see match.py for why sift)
    # match: keypoints kept per screenshot, strongest first. Dense page text takes the strongest ones:
    # capped at 1000, a text-heavy test page kept too few on its photo to verify anything.
    screen_features: int = 2000
    query_features: int = 1000  # match: keypoints kept per query photo
    ratio: float = 0.8  # match: Lowe's ratio test
    min_inliers: int = 6  # match: fewer RANSAC inliers than this counts as no match
    fuse_depth: int = 100  # hybrid: ranks fused from each component
    rrf_k: float = 60.0  # hybrid: reciprocal rank fusion constant
    # hybrid: {kind: {retriever: weight}}, kinds mmdocir / image / image_question / wit; what is given
    # replaces the built-in weight of that kind and retriever, the rest stay (hybrid.DEFAULT_WEIGHTS)
    weights: dict[str, dict[str, float]] | None = None
    seed: int = 0  # random baseline
    # A trained Track-1 run directory (`mmctr retrieval train --out RUN`): the trained retriever
    # reads its model there, and hybrid fuses it as one more component when it is set.
    run: Path | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.doc_text not in DOC_TEXTS:
            raise ConfigError(f"retriever option doc_text={self.doc_text!r}; expected one of {DOC_TEXTS}")
        if self.bm25_scope not in ("document", "pool"):
            raise ConfigError(f"retriever option bm25_scope={self.bm25_scope!r}; expected document or pool")
        self.crop_grids = tuple(int(g) for g in self.crop_grids)
        if not self.crop_grids or min(self.crop_grids) < 1:
            raise ConfigError(f"retriever option crop_grids={self.crop_grids!r}: positive integers needed")
        if self.local_features not in ("sift", "orb"):
            raise ConfigError(
                f"retriever option local_features={self.local_features!r}; expected sift or orb"
            )
        for name in ("match_candidates", "screen_features", "query_features", "fuse_depth", "min_inliers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"retriever option {name}={getattr(self, name)!r} must be at least 1")
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        if self.run is not None:
            self.run = Path(self.run)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RetrieverOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown retriever option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def new_timings(task: str) -> dict[str, Any]:
    """The timings of one rank call. `encode_ms` / `search_ms` hold one entry per query: the time
    to turn the query into what the index is searched with, and the search itself."""
    return {
        "task": task,  # "docs" | "passages"
        "index_seconds": 0.0,  # building the index: encoding/tokenising every candidate
        "items_indexed": 0,  # pages or passages
        "index_bytes": 0,  # what the index holds in memory (vectors, postings, descriptors)
        "encode_ms": [],
        "search_ms": [],
        "from_cache": 0,  # vectors read from the embedding cache instead of encoded
        "fallback": None,  # what stood in when the retriever cannot use the task's inputs
        "load_seconds": 0.0,  # loading model weights (not part of index_seconds)
    }


class Retriever(ABC):
    """Ranks candidates for the questions of both sub-tasks; see the module docstring."""

    name: str = ""

    def __init__(self, options: RetrieverOptions | None = None):
        self.options = options or RetrieverOptions()
        self.timings: dict[str, Any] = new_timings("")

    @abstractmethod
    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]: ...

    @abstractmethod
    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]: ...


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t:` ... then `t[0]` holds the seconds the block took."""
    out = [0.0]
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out[0] = time.perf_counter() - t0


def check_k(k: int) -> None:
    if int(k) < 1:
        raise ConfigError(f"k={k}: a ranking needs at least one id")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, best first; ties go to the lower position, so a ranking
    never depends on sort internals."""
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if n > 4 * k:
        # every position scoring at least the k-th best (ties at the boundary included)
        cut = np.partition(scores, n - k)[n - k]
        cand = np.flatnonzero(scores >= cut)
    else:
        cand = np.arange(n)
    order = np.lexsort((cand, -scores[cand]))
    return cand[order[:k]]


def stable_seed(*parts: object) -> int:
    """A seed from strings/ints that is the same in every process (unlike `hash`)."""
    h = hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little")


# ----------------------------------------------------------------------------------------------
# texts


def page_texts(pages: DocPages, doc_text: str) -> list[str]:
    """The text of each page that text retrievers index: the VLM description, the OCR, or both."""
    if doc_text == "vlm":
        return [t or "" for t in pages.vlm_text]
    if doc_text == "ocr":
        return [t or "" for t in pages.ocr_text]
    return [f"{v or ''}\n{o or ''}" for v, o in zip(pages.vlm_text, pages.ocr_text, strict=True)]


def query_text(q: ImageQuery, instruction: bool) -> str:
    """An M2KR query as text: its question (empty for image-only queries), after its instruction."""
    parts = [q.instruction] if instruction and q.instruction else []
    if q.question:
        parts.append(q.question)
    return " ".join(parts)


def doc_candidates(docs: DocSet) -> dict[str, list[int]]:
    """doc_name -> page rows, each question's candidates. A question whose document has no pages is
    an error naming the question: it could only be answered with made-up ids."""
    rows = docs.pages.rows_of()
    for row, q in enumerate(docs.questions):
        if q.doc_name not in rows:
            raise DataError(
                docs.source or "MMDocIR questions",
                "doc_name",
                f"row {row} (question {q.question_id}): document {q.doc_name!r} has no pages in the page table",
            )
    return rows


# ----------------------------------------------------------------------------------------------
# images


def read_image_bytes(path: Path | None, field_name: str, who: str) -> bytes:
    """The bytes of an image file, or a DataError naming the file, the field and the row."""
    if path is None:
        raise DataError("<none>", field_name, f"{who}: has no image path")
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, field_name, f"{who}: image file not found") from None
    except OSError as err:
        raise DataError(path, field_name, f"{who}: image file unreadable ({err})") from None
    if not data:
        raise DataError(path, field_name, f"{who}: image file is empty")
    return data


def open_rgb(data: bytes, path: Path | None, field_name: str, who: str):
    """Decode image bytes to an RGB PIL image, or a DataError naming the file."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(path or "<bytes>", field_name, f"{who}: not a decodable image ({err})") from None


# ----------------------------------------------------------------------------------------------
# text encoding through the content-keyed cache


@dataclass
class TextVectors:
    matrix: np.ndarray  # (n, D) float32, L2-normalised
    from_cache: int = 0
    encode_ms: list[float] = field(default_factory=list)  # per text, when encoded one at a time


def _normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-12)


def open_cache(options: RetrieverOptions, modality: str, key: str, identity: dict):
    """The on-disk embedding cache for one encoder identity, or None when caching is off."""
    if not options.use_cache:
        return None
    from mmctr.encoders.cache import EmbeddingCache, default_cache_dir

    root = options.cache_dir if options.cache_dir is not None else default_cache_dir()
    return EmbeddingCache(root, modality, key, identity)


class TextEmbedder:
    """A text encoder (Task 1's registry) with its cache: items in batches, queries one at a time
    (each timed, as a service would see them)."""

    def __init__(self, options: RetrieverOptions):
        from mmctr.encoders import EncoderOptions, build_encoder

        self.options = options
        self.encoder = build_encoder(
            options.text_encoder,
            "text",
            EncoderOptions(device=options.device, precision=options.precision, batch_size=options.batch_size),
        )
        self.cache = open_cache(options, "text", self.encoder.cache_key(), self.encoder.identity())
        self.load_seconds = 0.0  # spent loading weights, so callers can keep it out of index time

    def ensure_loaded(self) -> None:
        if not self.encoder.loaded:
            with stopwatch() as took:
                self.encoder.load()
            self.load_seconds += took[0]

    def items(self, texts: list[str]) -> TextVectors:
        """Vectors of many texts: cache hits read, the rest encoded in batches by Task 1's runner
        (identical texts once, sorted by length)."""
        from mmctr.encoders.cache import text_key
        from mmctr.encoders.runner import encode_titles

        n = len(texts)
        if n == 0:
            return TextVectors(np.zeros((0, 0), dtype=np.float32))
        if self.cache is None or not self.cache.lookup([text_key(t) for t in texts])[0].all():
            self.ensure_loaded()
        titles = {i + 1: t for i, t in enumerate(texts)}  # row 0 is the runner's padding item
        feats = encode_titles(
            self.encoder,
            titles,
            np.arange(1, n + 1, dtype=np.int64),
            n + 1,
            self.cache,
            progress=self.options.progress,
        )
        return TextVectors(_normalise(feats.matrix[1:]), from_cache=feats.stats.from_cache)

    def queries(self, texts: list[str]) -> TextVectors:
        from mmctr.encoders.cache import text_key

        n = len(texts)
        keys = [text_key(t) for t in texts]
        out: np.ndarray | None = None
        found = np.zeros(n, dtype=bool)
        ms = [0.0] * n
        if self.cache is not None and n:
            t0 = time.perf_counter()
            found, vecs = self.cache.lookup(keys)
            per = (time.perf_counter() - t0) * 1000 / n
            ms = [per] * n
            if vecs is not None:
                out = np.zeros((n, vecs.shape[1]), dtype=np.float32)
                out[found] = vecs
        todo = np.flatnonzero(~found)
        if len(todo):
            self.ensure_loaded()  # outside the per-query clock: loading is not a query's cost
            new: list[np.ndarray] = []
            for i in todo:
                t0 = time.perf_counter()
                v = self.encoder.encode([texts[i]])[0]
                ms[i] += (time.perf_counter() - t0) * 1000
                new.append(v)
            vecs_new = np.stack(new)
            if out is None:
                out = np.zeros((n, vecs_new.shape[1]), dtype=np.float32)
            out[todo] = vecs_new
            if self.cache is not None:
                first = {keys[i]: j for j, i in reversed(list(enumerate(todo)))}  # one row per text
                self.cache.put(list(first), vecs_new[list(first.values())])
        assert out is not None or n == 0
        matrix = _normalise(out) if out is not None else np.zeros((0, 0), dtype=np.float32)
        return TextVectors(matrix, from_cache=int(found.sum()), encode_ms=ms)
