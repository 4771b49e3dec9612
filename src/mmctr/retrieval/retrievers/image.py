"""Image retrieval over page screenshots: EfficientNet-Lite0 features (any Task-1 image encoder)
of the query photo against square windows of each passage's screenshot; a passage scores the
best cosine over its windows.

Why windows: a query photo re-appears in its passage's screenshot as a small part of a page of
text, so a feature of the whole page hardly sees it, while a window around it does. The windows
of grid g are squares of side min(W, H)/g laid evenly over the page (g x g on a square page, more
along the long side of a tall one), plus the whole page letterboxed; `crop_grids` (default 1, 2,
3) sets them. Query photos are letterboxed on white, as a photo sits on a white page.

Vectors are centred on the mean window vector before cosine: pooled CNN features are all
positive, so raw cosines of unrelated images are high and close together.

MMDocIR has text questions and page images: an image-only model cannot read the question, so
`rank_docs` ranks by dense text (MiniLM on the page's `doc_text`) and says so in
`timings["fallback"]`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import numpy as np

from mmctr.errors import DataError
from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import (
    Retriever,
    check_k,
    new_timings,
    open_cache,
    open_rgb,
    read_image_bytes,
    stopwatch,
    top_k,
)

FALLBACK = "dense text retriever on the page text: an image model cannot read a text question"
_CHUNK = 32  # screenshots read, looked up in the cache and encoded together


def windows(width: int, height: int, grids: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) boxes: the whole page, then for each grid g squares of side
    min(W, H)/g laid evenly (overlapping a little where the sides do not divide) over the page."""
    boxes = [(0, 0, width, height)]
    short = min(width, height)
    for g in grids:
        if g == 1 and width == height:
            continue  # the whole page already
        side = max(1, round(short / g))
        nx, ny = -(-width // side), -(-height // side)  # ceil
        xs = np.linspace(0, width - side, nx).round().astype(int) if nx > 1 else [0]
        ys = np.linspace(0, height - side, ny).round().astype(int) if ny > 1 else [0]
        boxes += [(int(x), int(y), int(x) + side, int(y) + side) for y in ys for x in xs]
    return boxes


def _square_pixels(img, size: int, mean, std) -> np.ndarray:
    """Letterbox an RGB PIL image on white to a square, resize to `size`, normalise: (3, S, S)."""
    from PIL import Image

    w, h = img.size
    if w != h:
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    img = img.resize((size, size), resample=Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)  # (S, S, 3)
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


class ImageEmbedder:
    """The image encoder with its preprocessing for windows and query photos, and its cache."""

    def __init__(self, options):
        from mmctr.encoders import EncoderOptions, build_encoder

        self.options = options
        self.encoder = build_encoder(
            options.image_encoder,
            "image",
            EncoderOptions(
                device=options.device,
                precision=options.precision,
                batch_size=options.batch_size,
                image_size=options.image_size,
            ),
        )
        t = self.encoder.transform()
        self.size, self.mean, self.std = t.size, t.mean, t.std
        identity = {**self.encoder.identity(), "input": "letterboxed-square-v1"}
        key = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.cache = open_cache(options, "image", key, identity)
        self.load_seconds = 0.0  # spent loading weights, so callers can keep it out of index time

    def ensure_loaded(self) -> None:
        if not self.encoder.loaded:
            with stopwatch() as took:
                self.encoder.load()
            self.load_seconds += took[0]

    def pixels(self, img) -> np.ndarray:
        return _square_pixels(img, self.size, self.mean, self.std)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        self.ensure_loaded()
        return self.encoder.encode(pixels)


def _box_key(digest: bytes, box: tuple[int, int, int, int]) -> bytes:
    return hashlib.sha1(digest + repr(box).encode()).digest()


class ImageRetriever(Retriever):
    name = "image"

    def __init__(self, options=None):
        super().__init__(options)
        self._embedder: ImageEmbedder | None = None
        self._dense = None

    @property
    def embedder(self) -> ImageEmbedder:
        if self._embedder is None:
            self._embedder = ImageEmbedder(self.options)
        return self._embedder

    # -- MMDocIR: the stated fallback -------------------------------------------------------------

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        from mmctr.retrieval.retrievers.dense import DenseRetriever

        if self._dense is None:
            self._dense = DenseRetriever(self.options)
        out = self._dense.rank_docs(docs, k)
        self.timings = self._dense.timings
        self.timings["fallback"] = FALLBACK
        return out

    # -- M2KR -------------------------------------------------------------------------------------

    def _screenshot_chunks(self, ps: PassageSet) -> Iterator[list[tuple[int, bytes]]]:
        chunk: list[tuple[int, bytes]] = []
        for i, path in enumerate(ps.passages.screenshot):
            if path is None:
                continue  # no screenshot: the passage ranks below every passage with one
            who = f"passage {ps.passages.passage_id[i]} (row {i})"
            chunk.append((i, read_image_bytes(path, "page_screenshot", who)))
            if len(chunk) == _CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def index_passages(self, ps: PassageSet) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(window vectors (n_windows, D) raw, owner passage row of each window (n_windows,), mean
        vector (D,), vectors read from the cache)."""
        import io

        from PIL import Image

        emb = self.embedder
        grids = self.options.crop_grids
        vec_parts: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        from_cache = 0
        from tqdm import tqdm

        n_shots = sum(p is not None for p in ps.passages.screenshot)
        bar = tqdm(total=n_shots, desc="screenshot windows", unit="page", disable=not self.options.progress)
        for chunk in self._screenshot_chunks(ps):
            bar.update(len(chunk))
            plan = []  # (passage row, bytes, boxes, keys)
            for i, data in chunk:
                try:
                    w, h = Image.open(io.BytesIO(data)).size  # header only
                except Exception as err:  # any decoder failure: truncated file, not an image, ...
                    who = f"passage {ps.passages.passage_id[i]} (row {i})"
                    raise DataError(
                        ps.passages.screenshot[i], "page_screenshot", f"{who}: not a decodable image ({err})"
                    ) from None
                digest = hashlib.sha1(data).digest()
                boxes = windows(w, h, grids)
                plan.append((i, data, boxes, [_box_key(digest, b) for b in boxes]))
            keys = [k for p in plan for k in p[3]]
            vecs = None
            found = np.zeros(len(keys), dtype=bool)
            if emb.cache is not None:
                found, hit = emb.cache.lookup(keys)
                if hit is not None:
                    vecs = np.zeros((len(keys), hit.shape[1]), dtype=np.float32)
                    vecs[found] = hit
                from_cache += int(found.sum())
            todo_pix: list[np.ndarray] = []
            todo_pos: list[int] = []
            pos = 0
            for i, data, boxes, _ in plan:
                need = [j for j in range(len(boxes)) if not found[pos + j]]
                if need:
                    who = f"passage {ps.passages.passage_id[i]} (row {i})"
                    img = open_rgb(data, ps.passages.screenshot[i], "page_screenshot", who)
                    for j in need:
                        todo_pix.append(emb.pixels(img.crop(boxes[j])))
                        todo_pos.append(pos + j)
                pos += len(boxes)
            if todo_pix:
                new = np.concatenate(
                    [
                        emb.encode(np.stack(todo_pix[s : s + emb.encoder.batch_size]))
                        for s in range(0, len(todo_pix), emb.encoder.batch_size)
                    ]
                )
                if vecs is None:
                    vecs = np.zeros((len(keys), new.shape[1]), dtype=np.float32)
                vecs[todo_pos] = new
                if emb.cache is not None:
                    emb.cache.put([keys[p] for p in todo_pos], new)
            assert vecs is not None
            vec_parts.append(vecs)
            owners.append(np.concatenate([np.full(len(p[2]), p[0], dtype=np.int64) for p in plan]))
        bar.close()
        if not vec_parts:
            return np.zeros((0, 1), np.float32), np.zeros(0, np.int64), np.zeros(1, np.float32), 0
        raw = np.concatenate(vec_parts)
        return raw, np.concatenate(owners), raw.mean(axis=0), from_cache

    def query_vectors(self, ps: PassageSet, center: np.ndarray) -> tuple[np.ndarray, list[float], int]:
        """(centred, normalised query vectors (n, D), encode ms per query, from cache). A query
        without an image gets a zero vector: every passage ties, the ranking is the pool order."""
        emb = self.embedder
        n = len(ps.queries)
        out = np.zeros((n, center.shape[0]), dtype=np.float32)
        ms: list[float] = []
        from_cache = 0
        if any(q.image_path is not None for q in ps.queries):
            emb.ensure_loaded()  # before the per-query clocks: loading is not a query's cost
        for r, q in enumerate(ps.queries):
            if q.image_path is None:
                ms.append(0.0)
                continue
            who = f"query {q.question_id} (row {r})"
            data = read_image_bytes(q.image_path, "img_path", who)
            key = _box_key(hashlib.sha1(data).digest(), (-1, -1, -1, -1))  # whole photo
            with stopwatch() as took:
                v = None
                if emb.cache is not None:
                    _, hit = emb.cache.lookup([key])
                    if hit is not None:
                        v = hit[0]
                        from_cache += 1
                if v is None:
                    img = open_rgb(data, q.image_path, "img_path", who)
                    v = emb.encode(emb.pixels(img)[None])[0]
                    if emb.cache is not None:
                        emb.cache.put([key], v[None])
            ms.append(took[0] * 1000)
            out[r] = v - center
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
        return out, ms, from_cache

    def passage_rows(self, ps: PassageSet, depth: int) -> dict[str, np.ndarray]:
        """question_id -> the `depth` best passage rows, best first. Fills `timings`."""
        t = self.timings = new_timings("passages")
        loaded = self.embedder.load_seconds
        with stopwatch() as took:
            raw, owner, center, cached = self.index_passages(ps)
            windows_ = raw - center
            windows_ /= np.linalg.norm(windows_, axis=1, keepdims=True) + 1e-12
        t["index_seconds"] = took[0] - (self.embedder.load_seconds - loaded)
        t["items_indexed"] = len(ps.passages)
        t["index_bytes"] = int(windows_.nbytes + owner.nbytes)
        t["windows"] = int(len(owner))
        if len(owner):
            queries, enc_ms, q_cached = self.query_vectors(ps, center)
        else:  # no passage has a screenshot: nothing to compare a photo with, every passage ties
            queries, enc_ms, q_cached = np.zeros((len(ps.queries), 1), np.float32), [0.0] * len(ps.queries), 0
            t["fallback"] = "no passage has a screenshot: the pool order"
        t["load_seconds"] = self.embedder.load_seconds - loaded
        t["encode_ms"] = enc_ms
        t["from_cache"] = cached + q_cached
        n = len(ps.passages)
        # windows are stored passage by passage: one max per run of equal owners
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, int)
        has = owner[starts] if len(owner) else np.zeros(0, int)
        out: dict[str, np.ndarray] = {}
        for r, q in enumerate(ps.queries):
            with stopwatch() as search:
                scores = np.full(n, -np.inf, dtype=np.float32)
                if len(owner):
                    sims = windows_ @ queries[r]  # (n_windows,)
                    scores[has] = np.maximum.reduceat(sims, starts)
                best = top_k(scores, depth)
            out[q.question_id] = best
            t["search_ms"].append(search[0] * 1000)
        return out

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        ids = ps.passages.passage_id
        return {qid: [ids[i] for i in rows] for qid, rows in self.passage_rows(ps, k).items()}


def rank_image_only(
    image: ImageRetriever,
    ps: PassageSet,
    rows_asked: list[int],
    k: int,
    ranked: dict[int, list[str]],
    encode_ms: list[float],
    search_ms: list[float],
    timings: dict,
) -> None:
    """The fallback of retrievers that read only a query's text: the M2KR queries at `rows_asked`
    (image-only ones) ranked by `image`, their rankings and per-query times written in place, and
    the image index's costs added to `timings`."""
    ids = ps.passages.passage_id
    sub = PassageSet([ps.queries[i] for i in rows_asked], ps.passages, source=ps.source)
    rows = image.passage_rows(sub, k)
    it = image.timings
    for j, i in enumerate(rows_asked):
        ranked[i] = [ids[r] for r in rows[ps.queries[i].question_id]]
        encode_ms[i], search_ms[i] = it["encode_ms"][j], it["search_ms"][j]
    for key in ("index_seconds", "index_bytes", "from_cache", "load_seconds"):
        timings[key] += it[key]
    timings["windows"] = it.get("windows", 0)
