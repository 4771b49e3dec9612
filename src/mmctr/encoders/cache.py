"""An on-disk cache of raw encoder outputs, keyed by encoder and content.

Layout: `<cache dir>/<modality>-<encoder key>/` holds `encoder.json` (the identity the key was
hashed from) and shards `<name>.keys.npy` (n, 20-byte SHA-1 digests of the content: title text or
image bytes) + `<name>.vecs.npy` (n, D) float32. Shards are written as encoding goes, each by
rename from a temporary file, so an interrupted run keeps what it finished and two runs never see
a half-written shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np

from mmctr.errors import DataError

KEY_BYTES = 20  # SHA-1


def _split_keys(keys: np.ndarray) -> list[bytes]:
    if keys.ndim != 2 or keys.shape[1] != KEY_BYTES:
        raise ValueError(f"cache keys have shape {keys.shape}; expected (n, {KEY_BYTES})")
    raw = keys.astype(np.uint8, copy=False).tobytes()
    return [raw[i : i + KEY_BYTES] for i in range(0, len(raw), KEY_BYTES)]


def default_cache_dir() -> Path:
    env = os.environ.get("MMCTR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mmctr"


def content_key(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def text_key(text: str) -> bytes:
    return content_key(text.encode("utf-8"))


class EmbeddingCache:
    """Vectors of one encoder (identified by `key`), looked up by content digest."""

    def __init__(self, root: Path, modality: str, key: str, identity: dict):
        self.dir = Path(root) / f"{modality}-{key}"
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "encoder.json"
        if not meta.exists():
            tmp = meta.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps(identity, indent=2, sort_keys=True))
            os.replace(tmp, meta)
        self._index: dict[bytes, tuple[int, int]] | None = None
        self._shards: list[Path] = []

    def _load_index(self) -> dict[bytes, tuple[int, int]]:
        if self._index is None:
            index: dict[bytes, tuple[int, int]] = {}
            self._shards = sorted(self.dir.glob("*.keys.npy"))
            for s, path in enumerate(self._shards):
                try:
                    keys = np.load(path)
                except (OSError, ValueError) as err:
                    raise DataError(
                        path, None, f"unreadable cache shard ({err}); delete it to rebuild"
                    ) from err
                for row, k in enumerate(_split_keys(keys)):
                    index[k] = (s, row)
            self._index = index
        return self._index

    def lookup(self, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """(found mask (n,), vectors of the found keys in order (m, D) or None when none found)."""
        index = self._load_index()
        hits = [index.get(k) for k in keys]
        found = np.array([h is not None for h in hits], dtype=bool)
        if not found.any():
            return found, None
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for pos, h in enumerate(h for h in hits if h is not None):
            by_shard.setdefault(h[0], []).append((pos, h[1]))
        dim = None
        out: np.ndarray | None = None
        for s, pairs in by_shard.items():
            vec_path = Path(str(self._shards[s]).replace(".keys.npy", ".vecs.npy"))
            try:
                vecs = np.load(vec_path, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise DataError(
                    vec_path, None, f"unreadable cache shard ({err}); delete it to rebuild"
                ) from err
            if out is None:
                dim = vecs.shape[1]
                out = np.empty((int(found.sum()), dim), dtype=np.float32)
            elif vecs.shape[1] != dim:
                raise DataError(vec_path, None, f"holds {vecs.shape[1]}-d vectors; other shards hold {dim}-d")
            pos = np.array([p for p, _ in pairs])
            rows = np.array([r for _, r in pairs])
            order = np.argsort(rows)  # sorted reads from the memory map
            out[pos[order]] = vecs[rows[order]]
        return found, out

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if not keys:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        name = uuid.uuid4().hex
        # raw uint8 rows: numpy's "S20" strings would drop a digest's trailing zero bytes
        k_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        # vectors first, keys last: a shard counts only once its keys file exists
        for suffix, arr in ((".vecs.npy", vectors), (".keys.npy", k_arr)):
            final = self.dir / f"{name}{suffix}"
            tmp = self.dir / f".{name}{suffix}.tmp"
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, final)
        if self._index is not None:
            s = len(self._shards)
            self._shards.append(self.dir / f"{name}.keys.npy")
            for row, k in enumerate(keys):
                self._index[k] = (s, row)
