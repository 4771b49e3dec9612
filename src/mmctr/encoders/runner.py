"""Run an encoder over every item: cache lookups by content, batching, parallel image decoding,
a progress bar in items/s, and a stated fallback for items without a usable input.

Every result is a matrix whose row index is the item id (row 0, the padding item, stays zero). Rows
are written by id at every step; no step relies on the order in which files were listed.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mmctr.encoders.base import ImageEncoder, TextEncoder, chunks
from mmctr.encoders.cache import EmbeddingCache, content_key, text_key
from mmctr.encoders.image import ImageListing, decode_batches, default_workers
from mmctr.errors import MMCTRError

FALLBACKS = ("mean", "zeros")
_PUT_EVERY = 8192  # vectors per cache shard written while encoding


@dataclass
class EncodeStats:
    """How one modality was encoded; part of the JSON written beside the item_info file."""

    modality: str
    encoder: str
    cache_key: str
    device: str
    precision: str
    preprocessing: dict[str, Any]
    dim: int = 0
    items: int = 0
    from_cache: int = 0
    encoded: int = 0
    encode_seconds: float = 0.0
    items_per_s: float = 0.0  # encoded items / encode_seconds (model + decoding), 0 when all cached
    missing: int = 0  # items with no input at all (no cover file / no title)
    unreadable: int = 0  # inputs present but not decodable
    missing_ids: list[int] = field(default_factory=list)  # first few, for the report
    unreadable_examples: dict[str, str] = field(default_factory=dict)  # id -> error, first few
    fallback: str = "mean"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModalityFeatures:
    matrix: np.ndarray  # (n_rows, D) float32, row == item id, row 0 zeros
    present: np.ndarray  # (n_rows,) bool: the row holds the item's own encoded input
    stats: EncodeStats
    encoded_ids: np.ndarray  # ids encoded by the model in this run (not from the cache)


def _stats(encoder: TextEncoder | ImageEncoder, n: int, fallback: str) -> EncodeStats:
    if fallback not in FALLBACKS:
        raise MMCTRError(f"missing-input fallback {fallback!r} unknown; expected one of {FALLBACKS}")
    return EncodeStats(
        modality=encoder.modality,
        encoder=encoder.spec,
        cache_key=encoder.cache_key(),
        device=str(encoder.device),
        precision=encoder.precision,
        preprocessing=encoder.preprocessing(),
        items=n,
        fallback=fallback,
    )


def _fill_fallback(matrix: np.ndarray, present: np.ndarray, ids: np.ndarray, fallback: str) -> None:
    """Rows of `ids` without their own input get the mean of the encoded items' rows (a neutral
    "typical item") or zeros."""
    absent = ids[~present[ids]]
    if absent.size == 0:
        return
    if fallback == "mean" and present.any():
        matrix[absent] = matrix[present].mean(axis=0)
    else:
        matrix[absent] = 0.0


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit="item",
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )


class _Rows:
    """The (n_rows, D) result, allocated once the first vectors (and so D) are known; vectors are
    written straight to their item's row, so nothing is held twice."""

    def __init__(self, n_rows: int):
        self.n_rows = n_rows
        self.matrix: np.ndarray | None = None
        self.present = np.zeros(n_rows, dtype=bool)

    def set(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if self.matrix is None:
            self.matrix = np.zeros((self.n_rows, vecs.shape[1]), dtype=np.float32)
        self.matrix[ids] = vecs
        self.present[ids] = True

    def result(self) -> np.ndarray:
        return self.matrix if self.matrix is not None else np.zeros((self.n_rows, 0), dtype=np.float32)


def _cache_fill(cache: EmbeddingCache | None, keys: list[bytes], ids: np.ndarray, rows: _Rows) -> np.ndarray:
    """Look `keys` (the content of items `ids`) up; write hits to their rows; return the misses."""
    if cache is None or not keys:
        return np.ones(len(keys), dtype=bool)
    found, vecs = cache.lookup(keys)
    if vecs is not None:
        rows.set(ids[found], vecs)
    return ~found


# ----------------------------------------------------------------------------------------------
# titles


def encode_titles(
    encoder: TextEncoder,
    titles: dict[int, str | None],
    item_ids: np.ndarray,
    n_rows: int,
    cache: EmbeddingCache | None,
    progress: bool = True,
    fallback: str = "mean",
) -> ModalityFeatures:
    """Encode the title of every id in `item_ids`; missing titles (None) get the fallback."""
    stats = _stats(encoder, len(item_ids), fallback)
    have = np.array([titles.get(int(i)) is not None for i in item_ids], dtype=bool)
    ids = item_ids[have]
    texts = [titles[int(i)] or "" for i in ids]
    keys = [text_key(t) for t in texts]
    rows = _Rows(n_rows)
    miss = _cache_fill(cache, keys, ids, rows)
    stats.from_cache = int((~miss).sum())

    # Identical titles are encoded once; sorting by length keeps padding (wasted work) small.
    todo: dict[bytes, str] = {}
    for k, t, m in zip(keys, texts, miss, strict=True):
        if m:
            todo.setdefault(k, t)
    uniq_keys = sorted(todo, key=lambda k: len(todo[k]))
    vec_by_key: dict[bytes, np.ndarray] = {}
    if uniq_keys:
        encoder.load()  # outside the timed loop: items/s measures encoding, not model loading
    t0 = time.perf_counter()
    bar = _progress(len(uniq_keys), f"text  {encoder.spec}", progress and bool(uniq_keys))
    pending_k: list[bytes] = []
    pending_v: list[np.ndarray] = []
    for sl in chunks(len(uniq_keys), encoder.batch_size):
        batch_keys = uniq_keys[sl]
        vecs = encoder.encode([todo[k] for k in batch_keys])
        for k, v in zip(batch_keys, vecs, strict=True):
            vec_by_key[k] = v
        pending_k += batch_keys
        pending_v.append(vecs)
        if cache is not None and len(pending_k) >= _PUT_EVERY:
            cache.put(pending_k, np.concatenate(pending_v))
            pending_k, pending_v = [], []
        bar.update(len(batch_keys))
    bar.close()
    if cache is not None and pending_k:
        cache.put(pending_k, np.concatenate(pending_v))
    seconds = time.perf_counter() - t0
    if uniq_keys:
        rows.set(ids[miss], np.stack([vec_by_key[k] for k, m in zip(keys, miss, strict=True) if m]))
    stats.encoded = len(uniq_keys)
    stats.encode_seconds = seconds
    stats.items_per_s = len(uniq_keys) / seconds if uniq_keys else 0.0

    matrix, present = rows.result(), rows.present
    stats.dim = int(matrix.shape[1])
    missing = item_ids[~have]
    stats.missing = int(missing.size)
    stats.missing_ids = [int(i) for i in missing[:20]]
    if not present[item_ids].any():
        raise MMCTRError(
            f"no item has a title ({stats.missing} of {len(item_ids)} missing); check item_feature.parquet"
        )
    _fill_fallback(matrix, present, item_ids, fallback)
    return ModalityFeatures(matrix, present, stats, ids[miss])


# ----------------------------------------------------------------------------------------------
# images


def _read_keys(paths: list[Path], threads: int = 8) -> list[bytes | str]:
    """Content digest of each file, or the error text when it cannot be read."""

    def one(p: Path) -> bytes | str:
        try:
            return content_key(p.read_bytes())
        except OSError as err:
            return f"{type(err).__name__}: {err}"

    with ThreadPoolExecutor(threads) as pool:  # file reads and SHA-1 both release the GIL
        return list(pool.map(one, paths, chunksize=256))


def encode_images(
    encoder: ImageEncoder,
    listing: ImageListing,
    item_ids: np.ndarray,
    n_rows: int,
    cache: EmbeddingCache | None,
    progress: bool = True,
    fallback: str = "mean",
    workers: int | None = None,
) -> ModalityFeatures:
    """Encode the cover of every id in `item_ids`, each found by the id in its file name.

    Items with no cover file, or whose file cannot be read or decoded, are counted, reported and
    given the fallback; the run goes on."""
    stats = _stats(encoder, len(item_ids), fallback)
    have = np.array([int(i) in listing.paths for i in item_ids], dtype=bool)
    ids = item_ids[have]
    paths = [listing.paths[int(i)] for i in ids]
    digests = _read_keys(paths)
    unreadable: dict[int, str] = {int(i): d for i, d in zip(ids, digests, strict=True) if isinstance(d, str)}
    readable = np.array([not isinstance(d, str) for d in digests], dtype=bool)
    ids_r = ids[readable]
    paths_r = [p for p, ok in zip(paths, readable, strict=True) if ok]
    keys = [d for d in digests if not isinstance(d, str)]
    rows = _Rows(n_rows)
    miss = _cache_fill(cache, keys, ids_r, rows)
    stats.from_cache = int((~miss).sum())

    todo = np.flatnonzero(miss)
    todo_paths = [paths_r[j] for j in todo]
    n_workers = default_workers() if workers is None else workers
    if len(todo):
        encoder.load()  # outside the timed loop: items/s measures encoding, not model loading
    t0 = time.perf_counter()
    bar = _progress(len(todo), f"image {encoder.spec}", progress and bool(len(todo)))
    pending_k: list[bytes] = []
    pending_v: list[np.ndarray] = []
    encoded: list[int] = []
    if len(todo):
        loader = decode_batches(todo_paths, encoder.transform(), encoder.batch_size, n_workers)
        for _pos, ok_pos, pixels, errors in loader:
            for p, err in errors.items():
                unreadable[int(ids_r[todo[p]])] = err
            if pixels is not None:
                vecs = encoder.encode(pixels)  # (B, D) for the decoded positions ok_pos
                j = todo[ok_pos]
                rows.set(ids_r[j], vecs)  # each vector to the row of its own item id
                encoded.extend(ids_r[j].tolist())
                pending_k.extend(keys[i] for i in j)
                pending_v.append(vecs)
            if cache is not None and len(pending_k) >= _PUT_EVERY:
                cache.put(pending_k, np.concatenate(pending_v))
                pending_k, pending_v = [], []
            bar.update(len(_pos))
    bar.close()
    if cache is not None and pending_k:
        cache.put(pending_k, np.concatenate(pending_v))
    seconds = time.perf_counter() - t0
    stats.encoded = len(encoded)
    stats.encode_seconds = seconds
    stats.items_per_s = len(encoded) / seconds if encoded else 0.0

    matrix, present = rows.result(), rows.present
    stats.dim = int(matrix.shape[1])
    missing = item_ids[~have]
    stats.missing = int(missing.size)
    stats.missing_ids = [int(i) for i in missing[:20]]
    stats.unreadable = len(unreadable)
    stats.unreadable_examples = {str(k): v for k, v in sorted(unreadable.items())[:10]}
    if not present[item_ids].any():
        raise MMCTRError(
            f"no cover image could be encoded ({stats.missing} missing, {stats.unreadable} unreadable "
            f"of {len(item_ids)} items); check the item_images/ directory"
        )
    _fill_fallback(matrix, present, item_ids, fallback)
    return ModalityFeatures(matrix, present, stats, np.asarray(encoded, dtype=np.int64))


# ----------------------------------------------------------------------------------------------
# alignment proof


def check_alignment(
    encoder: TextEncoder | ImageEncoder,
    features: ModalityFeatures,
    inputs: dict[int, Any],
    n: int = 8,
    seed: int = 0,
    min_cosine: float = 0.98,
) -> dict[str, Any]:
    """Re-encode `n` random items one at a time, straight from their own input (title text or
    cover file found by id), and check each matches its row of the batched result.

    A batched run that put vectors in the wrong rows (e.g. by listing order) fails here. Raises
    MMCTRError on a mismatch."""
    candidates = np.array([i for i in features.encoded_ids if int(i) in inputs], dtype=np.int64)
    if candidates.size == 0:
        return {
            "checked": 0,
            "note": "every vector came from the cache, which is keyed by each item's own content",
        }
    rng = np.random.default_rng(seed)
    pick = rng.choice(candidates, size=min(n, candidates.size), replace=False).tolist()
    # Cosines are taken after removing the mean item vector: raw pooled CNN features are all
    # positive, so two different covers can have a raw cosine above 0.9.
    center = features.matrix[features.present].mean(axis=0)
    fresh = []
    for item_id in pick:
        if isinstance(encoder, TextEncoder):
            v = encoder.encode([inputs[item_id]])[0]
        else:
            v = encoder.encode(encoder.transform()(Path(inputs[item_id]).read_bytes())[None])[0]
        fresh.append(v - center)
    a = np.stack(fresh)  # (k, D) fresh encodings
    b = features.matrix[pick] - center  # (k, D) their rows in the batched result
    a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-12
    b /= np.linalg.norm(b, axis=1, keepdims=True) + 1e-12
    sim = a @ b.T  # (k, k): fresh item i against row of item j
    cosines = {str(i): round(float(sim[k, k]), 5) for k, i in enumerate(pick)}
    for k, item_id in enumerate(pick):
        best = int(np.argmax(sim[k]))
        if sim[k, k] < min_cosine or (best != k and sim[k, best] > sim[k, k]):
            raise MMCTRError(
                f"alignment check failed for {features.stats.modality} encoder {encoder.spec}: a fresh "
                f"encoding of item {item_id}'s own input has cosine {sim[k, k]:.4f} to row {item_id} "
                f"(best match: row {pick[best]}, {sim[k, best]:.4f}); embeddings are not in item-id order"
            )
    return {"checked": len(pick), "min_cosine": min(cosines.values()), "cosines": cosines}
