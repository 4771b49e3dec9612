"""Late interaction (ColBERT-style MaxSim) over the token vectors of the frozen text encoder, with
optional token pooling.

A query and a candidate are each a set of L2-normalised token vectors from the last hidden state
of `text_encoder` (the bundled all-MiniLM-L6-v2 by default; no training). [CLS], [SEP] and padding
are dropped, and so are punctuation-only tokens (as ColBERT does for documents), unless a text has
nothing else. The score is

    score(q, c) = sum over query tokens t of  max over c's vectors v of  cos(t, v).

One pooled vector per text (the `dense` retriever) must squeeze a whole page into 384 numbers;
MaxSim lets each query word find its own best match in the page.

- Long texts: MiniLM reads 256 tokens (its max_seq_length). A longer page is encoded as several
  overlapping chunks (`CHUNK_OVERLAP` tokens shared by neighbours) and keeps the token vectors of
  all of them, so every word of the page is seen in context once or twice.
- Storage: candidate vectors are float16, in one contiguous matrix with an offsets array
  (candidate i owns rows offsets[i]:offsets[i+1]); one query is scored against many candidates
  with one matmul over their rows and `np.maximum.reduceat` per candidate. On the CPU numpy has no
  fast float16 matmul, so rows are widened to float32 by torch in blocks while searching.
- Token pooling (`pool_factor`, as PyLate's pool_factor; queries are never pooled), two ways:
  `pooling="ward"` clusters each candidate's vectors alone (Ward) into at most
  max(1, n // pool_factor), each cluster replaced by its re-normalised mean; `pooling="global"`
  builds the same Ward trees but makes the pool's cheapest merges first, one merge height for
  all candidates, until total // pool_factor vectors are left. Pages of one document are
  near-duplicates and a fixed per-page fraction merges the few words that tell them apart as
  readily as repeats; the global cut merges repeats wherever they are and keeps dense pages
  dense. Measured (final rules, `OPENBLAS_NUM_THREADS=1 python scripts/bench_late.py DATA
  --factors 1 2 2.5 3 --global-factors 2.5 3`; chosen on synth-small seed 0, checked on seed 2):

      seed    pooling      vectors  MMDocIR (kept)   overall (kept)
      seed 0  none          100%    0.602            0.512
      seed 0  ward f=2.5     40%    0.572 (94.9%)    0.495 (96.6%)
      seed 0  global f=2.5   40%    0.596 (99.0%)    0.505 (98.7%)
      seed 2  none          100%    0.652            0.532
      seed 2  ward f=3       33%    0.596 (91.3%)    0.504 (94.6%)
      seed 2  global f=3     33%    0.615 (94.3%)    0.513 (96.3%)
      seed 2  ward f=2       50%    0.637 (97.6%)    0.528 (99.1%)
      seed 2  global f=2.5   40%    0.629 (96.5%)    0.524 (98.4%)

  So at 40% the overall score keeps >= 98% on both seeds, MMDocIR alone only on seed 0.
  Protecting rare tokens (low document frequency) from clustering, or dropping common ones, did
  not help on seed 0 (at 40%: 0.573-0.576 MMDocIR against Ward's 0.572 and global's 0.596).
  The registry holds `late` (no pooling), `late_pool` (global, factor 2.5: at most 40% of the
  vectors) and `late_pool3` (ward, factor 3); `LateInteractionRetriever(options, pool_factor=f,
  pooling=p)` builds any other.
- Cache: unpooled token matrices (float16) are kept on disk per text content under
  `<cache dir>/tokens-<key>/`, the key hashing the encoder's identity and the chunking; pooled
  vectors are recomputed from them on every run (seconds), so every factor shares one cache.
- M2KR image-only queries carry only an instruction as text, so a text model cannot rank for them:
  they get the `image` retriever's ranking, stated in `timings["fallback"]`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.errors import ConfigError, DataError
from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import (
    Retriever,
    RetrieverOptions,
    check_k,
    doc_candidates,
    new_timings,
    page_texts,
    query_text,
    stopwatch,
    top_k,
)
from mmctr.retrieval.retrievers.image import rank_image_only

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length (what it was trained with); special tokens included
CHUNK_OVERLAP = 64  # tokens shared by neighbouring chunks of a long text
TOKEN_RULE = "drop-special-padding-punctuation-v1"  # part of the cache key: what a text's vectors are
_SEARCH_BLOCK = 4096  # float16 rows widened to float32 at a time while searching
_PUT_EVERY = 256  # texts per cache shard written while encoding


# ----------------------------------------------------------------------------------------------
# scoring and pooling on plain arrays


def maxsim(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n,) late-interaction scores of one query (q, D) float32 against n candidates stored as rows
    `vectors` (N, D) (float16 or float32) with `offsets` (n + 1,). A candidate without vectors
    scores -inf (ranked last); a query without vectors scores 0 against every other candidate."""
    import torch

    n = len(offsets) - 1
    scores = np.full(n, -np.inf, dtype=np.float32)
    lengths = np.diff(offsets)
    has = np.flatnonzero(lengths > 0)
    if not len(has):
        return scores
    if query.shape[0] == 0:
        scores[has] = 0.0
        return scores
    base = int(offsets[0])
    rows = vectors[base : int(offsets[-1])]
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))  # (q, D)
    sims = torch.empty((rows.shape[0], q.shape[0]), dtype=torch.float32)  # (N, q)
    src = torch.from_numpy(np.ascontiguousarray(rows))  # (N, D), float16 stays float16
    buf = torch.empty((min(_SEARCH_BLOCK, rows.shape[0]), rows.shape[1]), dtype=torch.float32)
    for s in range(0, rows.shape[0], _SEARCH_BLOCK):
        e = min(s + _SEARCH_BLOCK, rows.shape[0])
        buf[: e - s].copy_(src[s:e])  # torch widens float16 with SIMD; numpy's cast is 4x slower
        torch.matmul(buf[: e - s], q.T, out=sims[s:e])  # (block, q)
    best = np.maximum.reduceat(sims.numpy(), offsets[has] - base, axis=0)  # (n_has, q)
    scores[has] = best.sum(axis=1)
    return scores


def budget_of(n: int, pool_factor: float) -> int:
    """Vectors n token vectors may keep after pooling: max(1, floor(n / pool_factor)); n itself
    at pool_factor 1, 0 for none."""
    if not pool_factor >= 1:
        raise ConfigError(f"late retriever: pool_factor={pool_factor}; expected a number >= 1")
    return n if n == 0 or pool_factor == 1 else max(1, int(n // pool_factor))


def _means(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(n, D) rows and (n,) cluster numbers 0..m-1 -> (m, D) float32 re-normalised cluster means."""
    m = int(groups.max()) + 1
    member = np.zeros((m, x.shape[0]), dtype=np.float64)  # (m, n) one-hot cluster membership
    member[groups, np.arange(x.shape[0])] = 1.0
    means = member @ x  # (m, D) sums; the norm below makes them means
    return (means / (np.linalg.norm(means, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def pool_tokens(vectors: np.ndarray, pool_factor: float) -> np.ndarray:
    """Token pooling of one candidate: (n, D) unit vectors -> (m, D) unit vectors float32 with
    m <= max(1, n // pool_factor), by Ward hierarchical clustering of the vectors; each cluster is
    replaced by its mean, re-normalised. pool_factor 1 returns the vectors unchanged."""
    from scipy.cluster.hierarchy import fcluster, linkage

    x = np.asarray(vectors, dtype=np.float64)  # (n, D)
    n = x.shape[0]
    target = budget_of(n, pool_factor)
    if pool_factor == 1 or n == 0:
        return x.astype(np.float32)
    if target >= n:
        return _means(x, np.arange(n))
    if target == 1:
        return _means(x, np.zeros(n, dtype=np.int64))
    tree = linkage(x, method="ward")  # (n - 1, 4)
    return _means(x, fcluster(tree, t=target, criterion="maxclust") - 1)


def _first_merges(tree: np.ndarray, n: int, k: int) -> np.ndarray:
    """(n,) cluster numbers 0..n-k-1 after the first k merges of a scipy linkage `tree`."""
    parent = np.arange(2 * n - 1)  # linkage node ids: leaves 0..n-1, merge j makes node n + j
    for j in range(k):
        a, b = int(tree[j, 0]), int(tree[j, 1])
        parent[a] = parent[b] = n + j
    root = np.arange(n)
    while True:  # follow parents up to the newest node made so far
        up = parent[root]
        if np.array_equal(up, root):
            break
        root = up
    return np.unique(root, return_inverse=True)[1]


def pool_global(mats: list[np.ndarray], pool_factor: float) -> list[np.ndarray]:
    """Token pooling of a whole pool under one budget: each candidate's vectors get a Ward tree,
    and the pool's cheapest merges are made, lowest Ward height first, until at most
    floor(total / pool_factor) vectors are left in all; each cluster becomes its re-normalised mean.

    Why: a Ward merge height measures what a merge costs (the rise in within-cluster variance), so
    one height for the pool spends the budget where it costs least. A page of repeated,
    near-identical tokens shrinks a lot and a dense page little, where `pool_tokens` squeezes each
    to the same fraction. Every candidate keeps at least one vector. Exactly the budget's count of
    merges is made; equal heights are taken in pool order (earlier candidate, earlier merge), so
    the result is deterministic."""
    from scipy.cluster.hierarchy import linkage

    xs = [np.asarray(m, dtype=np.float64) for m in mats]  # (n_i, D) each
    total = sum(x.shape[0] for x in xs)
    merges = total - budget_of(total, pool_factor)  # merges needed across the pool
    if pool_factor == 1:
        return [x.astype(np.float32) for x in xs]
    trees = [linkage(x, method="ward") if x.shape[0] > 1 else np.zeros((0, 4)) for x in xs]  # (n_i - 1, 4)
    heights = np.concatenate([t[:, 2] for t in trees] + [np.zeros(0)])
    owner = np.repeat(np.arange(len(xs)), [len(t) for t in trees])  # candidate of each merge
    chosen = owner[np.argsort(heights, kind="stable")[:merges]]
    # a candidate's merges rise in height (Ward is monotone), so the chosen ones are its first k
    k = np.bincount(chosen, minlength=len(xs))
    return [
        x.astype(np.float32) if x.shape[0] == 0 else _means(x, _first_merges(t, x.shape[0], int(ki)))
        for x, t, ki in zip(xs, trees, k, strict=True)
    ]


POOLINGS = {
    "ward": "each candidate Ward-clustered to at most n // pool_factor vectors",
    "global": "one Ward merge height for the whole pool, at most total // pool_factor vectors",
}


@dataclass
class MultiVectors:
    """Token vectors of n candidates: candidate i owns rows offsets[i]:offsets[i+1]."""

    vectors: np.ndarray  # (N, D) float16, unit rows
    offsets: np.ndarray  # (n + 1,) int64

    @classmethod
    def stack(cls, mats: list[np.ndarray], dim: int) -> MultiVectors:
        offsets = np.zeros(len(mats) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([m.shape[0] for m in mats])
        vectors = np.empty((int(offsets[-1]), dim), dtype=np.float16)  # (N, D)
        for i, m in enumerate(mats):
            vectors[offsets[i] : offsets[i + 1]] = m
        return cls(vectors, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes + self.offsets.nbytes)

    def of(self, i: int) -> np.ndarray:
        return self.vectors[self.offsets[i] : self.offsets[i + 1]]

    def scores(self, query: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(stop - start,) MaxSim scores of candidates start..stop-1 (one matmul over their rows)."""
        stop = len(self) if stop is None else stop
        return maxsim(query, self.vectors, self.offsets[start : stop + 1])


# ----------------------------------------------------------------------------------------------
# the on-disk cache of token matrices


class TokenCache:
    """Token matrices of one encoder identity, looked up by the SHA-1 of the text.

    Layout: `<root>/tokens-<key>/encoder.json` (the identity) and shards `<name>.keys.npy` (n, 20)
    uint8 digests, `<name>.offsets.npy` (n + 1,) int64, `<name>.vecs.npy` (N, D) float16. Each file
    is written to a temporary name and renamed, keys last: a shard counts once its keys exist."""

    def __init__(self, root: Path, identity: dict[str, Any]):
        key = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(root) / f"tokens-{key}"
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "encoder.json"
        if not meta.exists():
            tmp = self.dir / f".encoder.{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps(identity, indent=2, sort_keys=True))
            os.replace(tmp, meta)
        self._index: dict[bytes, tuple[int, int]] | None = None
        self._shards: list[str] = []  # shard names; a position in this list is a shard number

    def _load(self, path: Path, mmap: bool = False) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as err:
            raise DataError(
                path, None, f"unreadable token-vector cache shard ({err}); delete it to rebuild"
            ) from err

    def _index_of(self) -> dict[bytes, tuple[int, int]]:
        if self._index is None:
            self._index = {}
            for path in sorted(self.dir.glob("*.keys.npy")):
                keys = self._load(path)
                if keys.ndim != 2 or keys.shape[1] != 20:
                    raise DataError(path, None, f"holds keys of shape {keys.shape}; expected (n, 20)")
                s = len(self._shards)
                self._shards.append(path.name[: -len(".keys.npy")])
                raw = keys.astype(np.uint8, copy=False).tobytes()
                for row in range(keys.shape[0]):
                    self._index[raw[row * 20 : (row + 1) * 20]] = (s, row)
        return self._index

    def lookup(self, keys: list[bytes]) -> list[np.ndarray | None]:
        """The float16 token matrix of each key, or None where it is not cached."""
        index = self._index_of()
        out: list[np.ndarray | None] = [None] * len(keys)
        opened: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i, k in enumerate(keys):
            hit = index.get(k)
            if hit is None:
                continue
            s, row = hit
            if s not in opened:
                name = self._shards[s]
                opened[s] = (
                    self._load(self.dir / f"{name}.offsets.npy"),
                    self._load(self.dir / f"{name}.vecs.npy", mmap=True),
                )
            offsets, vecs = opened[s]
            out[i] = np.array(vecs[offsets[row] : offsets[row + 1]], dtype=np.float16)
        return out

    def put(self, keys: list[bytes], mats: list[np.ndarray]) -> None:
        if not keys:
            return
        dim = next((m.shape[1] for m in mats if m.ndim == 2), 0)
        stacked = MultiVectors.stack(mats, dim)
        name = uuid.uuid4().hex
        k_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 20)
        for suffix, arr in (
            (".vecs.npy", stacked.vectors),
            (".offsets.npy", stacked.offsets),
            (".keys.npy", k_arr),
        ):
            tmp = self.dir / f".{name}{suffix}.tmp"
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, self.dir / f"{name}{suffix}")
        if self._index is not None:
            s = len(self._shards)
            self._shards.append(name)
            for row, k in enumerate(keys):
                self._index[k] = (s, row)


def _text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


# ----------------------------------------------------------------------------------------------
# token vectors from the frozen encoder


@dataclass
class TokenVectors:
    mats: list[np.ndarray]  # one (n_tokens, D) float16 unit-row matrix per text
    dim: int
    from_cache: int = 0
    encode_ms: list[float] | None = None  # per text, when encoded one at a time


class TokenEncoder:
    """The text encoder's last hidden state, token by token: chunking, token selection, the cache.

    The model is the one `text_encoder` names (minilm, st:PATH or hf:PATH: a BERT-like model that
    transformers' AutoModel loads); prefixes such as E5's are not applied."""

    def __init__(self, options: RetrieverOptions):
        from mmctr.encoders import EncoderOptions, build_encoder

        self.options = options
        spec = build_encoder(
            options.text_encoder,
            "text",
            EncoderOptions(device=options.device, precision=options.precision, batch_size=options.batch_size),
        )
        if spec.family not in ("st", "hf"):
            raise ConfigError(
                f"late retriever: text_encoder={options.text_encoder!r} is a {spec.family!r} encoder; "
                "token vectors need a BERT-like one (minilm, st:PATH or hf:PATH)"
            )
        self.model_name, self.device, self.precision = spec.model_name, spec.device, spec.precision
        self.max_tokens = _max_tokens(self.model_name)
        self.identity = {
            "model": spec.identity()["model"],
            "precision": self.precision,
            "max_tokens": self.max_tokens,
            "overlap": CHUNK_OVERLAP,
            "tokens": TOKEN_RULE,
            "vectors": "last-hidden-state-l2-float16",
        }
        self.cache: TokenCache | None = None
        if options.use_cache:
            from mmctr.encoders.cache import default_cache_dir

            root = options.cache_dir if options.cache_dir is not None else default_cache_dir()
            self.cache = TokenCache(root, self.identity)
        self.batch_size = options.batch_size or (256 if self.device.type == "cuda" else 32)
        self.tokenizer: Any = None
        self.net: Any = None
        self.load_seconds = 0.0  # spent loading weights, so callers can keep it out of index time

    def ensure_loaded(self) -> None:
        if self.net is not None:
            return
        with stopwatch() as took:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            from mmctr.encoders.base import cast_model

            hf_logging.disable_progress_bar()
            tok = AutoTokenizer.from_pretrained(self.model_name)
            self.net = cast_model(AutoModel.from_pretrained(self.model_name), self.device, self.precision)
            self.tokenizer = tok
            # the special tokens around a text ([CLS] ... [SEP] for BERT): a probe word with and without
            plain = tok("word", add_special_tokens=False)["input_ids"]
            full = tok("word")["input_ids"]
            lead = next(i for i in range(len(full)) if full[i : i + len(plain)] == plain)
            self.prefix, self.suffix = full[:lead], full[lead + len(plain) :]
            self.window = self.max_tokens - len(self.prefix) - len(self.suffix)  # content tokens per chunk
            self.punct = _punctuation_ids(tok)
        self.load_seconds += took[0]

    def _chunks(self, ids: list[int]) -> list[list[int]]:
        """Overlapping windows of content ids covering the text (one empty window for no text)."""
        stride = max(1, self.window - CHUNK_OVERLAP)
        starts = [0]
        while starts[-1] + self.window < len(ids):
            starts.append(starts[-1] + stride)
        return [ids[s : s + self.window] for s in starts]

    def _forward(self, chunks: list[list[int]]) -> list[np.ndarray]:
        """Hidden states of each chunk's content tokens, (len(chunk), D) float32 each."""
        import torch

        from mmctr.encoders.base import autocast

        tok = self.tokenizer
        wrapped = [self.prefix + c + self.suffix for c in chunks]
        order = sorted(range(len(wrapped)), key=lambda i: len(wrapped[i]))  # little padding per batch
        out: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(chunks)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        for s in range(0, len(order), self.batch_size):
            batch = order[s : s + self.batch_size]
            width = max(len(wrapped[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, L)
            mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, L)
            for b, i in enumerate(batch):
                ids[b, : len(wrapped[i])] = torch.tensor(wrapped[i])
                mask[b, : len(wrapped[i])] = 1
            with torch.inference_mode(), autocast(self.device, self.precision):
                hidden = self.net(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            states = hidden.last_hidden_state.float().cpu().numpy()  # (B, L, D)
            for b, i in enumerate(batch):
                out[i] = states[b, len(self.prefix) : len(self.prefix) + len(chunks[i])]
        return out

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token matrices (n_tokens, D) float16, unit rows, of texts not in the cache."""
        ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        chunks: list[list[int]] = []
        owner: list[int] = []
        for t, text_ids in enumerate(ids):
            for c in self._chunks(text_ids):
                chunks.append(c)
                owner.append(t)
        states = self._forward(chunks)
        parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in texts]
        for c, (chunk, h) in enumerate(zip(chunks, states, strict=True)):
            keep = ~self.punct[np.asarray(chunk, dtype=np.int64)]  # (len,) bool
            parts[owner[c]].append((h, keep))
        out: list[np.ndarray] = []
        dim = self.net.config.hidden_size
        for per_text in parts:
            # punctuation goes unless the text has nothing else
            any_word = any(keep.any() for _, keep in per_text)
            rows = [h[keep] if any_word else h for h, keep in per_text]
            m = np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)  # (n, D)
            m = m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-12)
            out.append(m.astype(np.float16))
        return out

    def items(self, texts: list[str]) -> TokenVectors:
        """Token matrices of many texts: cache hits read, the rest encoded in batches."""
        from tqdm import tqdm

        keys = [_text_key(t) for t in texts]
        mats: list[np.ndarray | None] = (
            self.cache.lookup(keys) if self.cache is not None else [None] * len(texts)
        )
        todo = [i for i, m in enumerate(mats) if m is None]
        from_cache = len(texts) - len(todo)
        if todo:
            self.ensure_loaded()
            bar = tqdm(total=len(todo), desc="token vectors", unit="text", disable=not self.options.progress)
            for s in range(0, len(todo), _PUT_EVERY):
                part = todo[s : s + _PUT_EVERY]
                new = self._encode([texts[i] for i in part])
                for i, m in zip(part, new, strict=True):
                    mats[i] = m
                if self.cache is not None:
                    first = {keys[i]: m for i, m in zip(part, new, strict=True)}  # one row per text
                    self.cache.put(list(first), list(first.values()))
                bar.update(len(part))
            bar.close()
        done = [m for m in mats if m is not None]
        return TokenVectors(done, _dim(done), from_cache=from_cache)

    def queries(self, texts: list[str]) -> TokenVectors:
        """Token matrices of queries: a cache read is timed as one per query, the rest encoded one
        at a time, each timed (as a service would see them)."""
        done, ms, cached = encode_queries(
            self.cache,
            [_text_key(t) for t in texts],
            texts,
            lambda t: self._encode([t])[0],
            self.ensure_loaded,
        )
        return TokenVectors(done, _dim(done), from_cache=cached, encode_ms=ms)


def encode_queries(
    cache: TokenCache | None,
    keys: list[bytes],
    texts: list[str],
    encode_one: Callable[[str], np.ndarray],
    load: Callable[[], object],
) -> tuple[list[np.ndarray], list[float], int]:
    """(token matrix of each query, ms per query, how many came from the cache). Cache reads are
    timed as one per query; the rest are encoded one at a time, each timed, after `load()` (loading
    a model is not a query's cost), and written back to the cache."""
    n = len(texts)
    mats: list[np.ndarray | None] = [None] * n
    ms = [0.0] * n
    if cache is not None and n:
        t0 = time.perf_counter()
        mats = cache.lookup(keys)
        ms = [(time.perf_counter() - t0) * 1000 / n] * n
    todo = [i for i, m in enumerate(mats) if m is None]
    if todo:
        load()
        for i in todo:
            t0 = time.perf_counter()
            mats[i] = encode_one(texts[i])
            ms[i] += (time.perf_counter() - t0) * 1000
        if cache is not None:
            first = {keys[i]: mats[i] for i in todo}  # one row per text
            cache.put(list(first), [m for m in first.values() if m is not None])
    return [m for m in mats if m is not None], ms, n - len(todo)


def _dim(mats: list[np.ndarray]) -> int:
    return max((m.shape[1] for m in mats if m.ndim == 2), default=0)


def _max_tokens(model: str) -> int:
    """Tokens the model reads at once, special tokens included: a sentence-transformers directory's
    max_seq_length, else MAX_TOKENS."""
    cfg = Path(model) / "sentence_bert_config.json"
    if cfg.is_file():
        try:
            return int(json.loads(cfg.read_text())["max_seq_length"])
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(cfg, "max_seq_length", f"not readable ({err})") from None
    return MAX_TOKENS


def _punctuation_ids(tokenizer: Any) -> np.ndarray:
    """(vocab,) bool: tokens made only of punctuation or symbols (WordPiece's '##' aside)."""
    out = np.zeros(max(tokenizer.vocab_size, len(tokenizer)), dtype=bool)
    for token, i in tokenizer.get_vocab().items():
        body = token[2:] if token.startswith("##") and len(token) > 2 else token
        body = body.lstrip("\u2581\u0120")  # SentencePiece / byte-level BPE word markers
        out[i] = bool(body) and all(unicodedata.category(ch)[0] in "PS" for ch in body)
    return out


# ----------------------------------------------------------------------------------------------
# the retriever


FALLBACK = (
    "image-only queries ({n} of {total}): the image retriever's ranking (their text is only an instruction)"
)


class LateInteractionRetriever(Retriever):
    name = "late"

    def __init__(
        self, options: RetrieverOptions | None = None, pool_factor: float = 1, pooling: str = "ward"
    ):
        super().__init__(options)
        try:
            factor = float(pool_factor)
        except (TypeError, ValueError):
            factor = float("nan")
        if not factor >= 1:  # NaN fails too
            raise ConfigError(f"late retriever: pool_factor={pool_factor!r}; expected a number >= 1")
        if pooling not in POOLINGS:
            raise ConfigError(f"late retriever: pooling={pooling!r}; expected one of {', '.join(POOLINGS)}")
        self.pool_factor = int(factor) if factor.is_integer() else factor  # 3 prints as 3, not 3.0
        self.pooling = pooling
        self._encoder: TokenEncoder | None = None
        self._image: Any = None

    @property
    def encoder(self) -> TokenEncoder:
        if self._encoder is None:
            self._encoder = TokenEncoder(self.options)
        return self._encoder

    def index(self, texts: list[str]) -> tuple[MultiVectors, int, int]:
        """(the candidates' vectors, pooled per `pool_factor`; vectors before pooling; read from cache)."""
        tv = self.encoder.items(texts)
        unpooled = sum(m.shape[0] for m in tv.mats)
        # pooling starts from the float16 vectors, cached or not, so a rerun ranks identically
        if self.pool_factor == 1:
            mats = tv.mats
        elif self.pooling == "global":
            mats = pool_global(tv.mats, self.pool_factor)
        else:
            mats = [pool_tokens(m, self.pool_factor) for m in tv.mats]
        return MultiVectors.stack(mats, tv.dim), unpooled, tv.from_cache

    def _fill_index_timings(
        self, t: dict[str, Any], index: MultiVectors, unpooled: int, seconds: float
    ) -> None:
        t["index_seconds"] = seconds - t["load_seconds"]
        t["items_indexed"] = len(index)
        t["index_bytes"] = index.nbytes
        t["vector_bytes"] = index.nbytes  # the token vectors alone (M2KR adds the image windows)
        t["vectors"] = int(index.vectors.shape[0])
        t["vectors_unpooled"] = int(unpooled)
        t["pool_factor"] = self.pool_factor
        t["pooling"] = self.pooling

    # -- MMDocIR ----------------------------------------------------------------------------------

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("docs")
        t["doc_text"] = self.options.doc_text
        rows = doc_candidates(docs)
        # candidates stored document by document, so a question's pages are one block of rows
        order = [r for doc_rows in rows.values() for r in doc_rows]
        span: dict[str, tuple[int, int]] = {}
        start = 0
        for doc, doc_rows in rows.items():
            span[doc] = (start, start + len(doc_rows))
            start += len(doc_rows)
        texts = page_texts(docs.pages, self.options.doc_text)
        loaded = self.encoder.load_seconds
        with stopwatch() as took:
            index, unpooled, cached = self.index([texts[r] for r in order])
        t["load_seconds"] = self.encoder.load_seconds - loaded
        self._fill_index_timings(t, index, unpooled, took[0])
        queries = self.encoder.queries([q.question for q in docs.questions])
        t["load_seconds"] = self.encoder.load_seconds - loaded
        t["from_cache"] = cached + queries.from_cache
        t["encode_ms"] = list(queries.encode_ms or [])
        out: dict[str, list[str]] = {}
        for i, q in enumerate(docs.questions):
            with stopwatch() as search:
                a, b = span[q.doc_name]
                best = top_k(index.scores(queries.mats[i].astype(np.float32), a, b), k)  # (<= k,)
            out[q.question_id] = [docs.pages.page_id[order[a + j]] for j in best]
            t["search_ms"].append(search[0] * 1000)
        return out

    # -- M2KR -------------------------------------------------------------------------------------

    @property
    def image(self) -> Any:
        if self._image is None:
            from mmctr.retrieval.retrievers.image import ImageRetriever

            self._image = ImageRetriever(self.options)
        return self._image

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("passages")
        n = len(ps.queries)
        with_text = [i for i, q in enumerate(ps.queries) if q.question]
        image_only = [i for i, q in enumerate(ps.queries) if not q.question]
        ids = ps.passages.passage_id
        loaded = self.encoder.load_seconds
        with stopwatch() as took:
            index, unpooled, cached = self.index([x or "" for x in ps.passages.text])
        t["load_seconds"] = self.encoder.load_seconds - loaded
        self._fill_index_timings(t, index, unpooled, took[0])
        encode_ms, search_ms = [0.0] * n, [0.0] * n
        ranked: dict[int, list[str]] = {}
        if with_text:
            queries = self.encoder.queries(
                [query_text(ps.queries[i], self.options.query_instruction) for i in with_text]
            )
            t["from_cache"] = cached + queries.from_cache
            for j, i in enumerate(with_text):
                encode_ms[i] = (queries.encode_ms or [])[j]
                with stopwatch() as search:
                    best = top_k(index.scores(queries.mats[j].astype(np.float32)), k)  # (<= k,)
                ranked[i] = [ids[r] for r in best]
                search_ms[i] = search[0] * 1000
        else:
            t["from_cache"] = cached
        t["load_seconds"] = self.encoder.load_seconds - loaded
        if image_only:
            rank_image_only(self.image, ps, image_only, k, ranked, encode_ms, search_ms, t)
            t["fallback"] = FALLBACK.format(n=len(image_only), total=n)
        t["encode_ms"], t["search_ms"] = encode_ms, search_ms
        return {q.question_id: ranked[i] for i, q in enumerate(ps.queries)}


def late_builder(
    pool_factor: float, pooling: str = "ward"
) -> Callable[[RetrieverOptions], LateInteractionRetriever]:
    """A registry builder for the late retriever with this pool factor and pooling."""

    def build(options: RetrieverOptions) -> LateInteractionRetriever:
        return LateInteractionRetriever(options, pool_factor=pool_factor, pooling=pooling)

    return build
