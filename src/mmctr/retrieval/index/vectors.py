"""One FAISS vector store, described by a kind the way faiss describes an index by a factory
string: `flat` (exact inner product), `hnsw` (graph, approximate), `ivfpq` (inverted lists of
product-quantised codes: the smallest), `int8` (scalar-quantised, exact search over 1 byte per
dimension) and `binary` (sign bits, Hamming distance: 1 bit per dimension).

Rows are never renumbered: a deleted row is a tombstone that searches skip, so adding and deleting
need no rebuild and a row id stays valid for the metadata that sits beside the vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmctr.errors import ConfigError, DataError

KINDS = ("flat", "hnsw", "ivfpq", "int8", "binary")


def _faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - the retrieval extra installs it
        raise ConfigError("the persistent index needs faiss-cpu: pip install -e '.[retrieval]'") from err
    return faiss


def _bits(x: np.ndarray) -> np.ndarray:
    """(n, D) float -> (n, ceil(D/8)) uint8 sign bits, for the binary kind."""
    return np.packbits(x > 0, axis=1)


class VectorStore:
    """Vectors of one modality, L2-normalised float32 in, inner-product (or Hamming) search out."""

    def __init__(self, kind: str, dim: int, index=None, deleted: np.ndarray | None = None):
        if kind not in KINDS:
            raise ConfigError(f"index kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kind, self.dim = kind, dim
        self.index = index
        self.deleted = np.zeros(0, dtype=bool) if deleted is None else deleted

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def _new_index(self, first: np.ndarray):
        faiss = _faiss()
        d = self.dim
        if self.kind == "flat":
            return faiss.IndexFlatIP(d)
        if self.kind == "hnsw":
            return faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        if self.kind == "int8":
            index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            index.train(first)
            return index
        if self.kind == "binary":
            return faiss.IndexBinaryFlat(d if d % 8 == 0 else d + 8 - d % 8)
        # ivfpq: lists and codebooks are trained once, on the first batch; later adds reuse them.
        n = len(first)
        nlist = max(1, min(256, int(np.sqrt(n))))
        m = next(m for m in (16, 8, 4, 2, 1) if d % m == 0)
        nbits = 8 if n >= 256 * 4 else max(1, min(8, int(np.log2(max(2, n // 4)))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quantizer, d, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
        index.train(first)
        index.nprobe = min(nlist, 16)
        return index

    def add(self, x: np.ndarray) -> np.ndarray:
        """Append rows; returns their row ids."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"vectors of shape {x.shape}; this store holds {self.dim}-d vectors")
        start = self.ntotal
        if len(x):
            if self.index is None:
                self.index = self._new_index(x)
            self.index.add(_bits(x) if self.kind == "binary" else x)
        self.deleted = np.concatenate([self.deleted, np.zeros(len(x), dtype=bool)])
        return np.arange(start, start + len(x))

    def delete(self, rows: np.ndarray) -> None:
        self.deleted[np.asarray(rows, dtype=np.int64)] = True

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k best live rows per query, best first; rows -1 where fewer live.
        Binary scores are D - 2·Hamming (the inner product of the ±1 sign vectors)."""
        q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32)
        nq = len(q)
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        rows = np.full((nq, k), -1, dtype=np.int64)
        live = int((~self.deleted).sum())
        if self.index is None or live == 0:
            return scores, rows
        fetch = min(self.ntotal, k + int(self.deleted.sum()))  # tombstones are skipped afterwards
        if self.kind == "binary":
            dist, idx = self.index.search(_bits(q), fetch)
            sims = (self.index.d - 2 * dist).astype(np.float32)
        else:
            sims, idx = self.index.search(q, fetch)
        for i in range(nq):
            keep = (idx[i] >= 0) & ~self.deleted[np.maximum(idx[i], 0)]
            r, s = idx[i][keep][:k], sims[i][keep][:k]
            rows[i, : len(r)], scores[i, : len(s)] = r, s
        return scores, rows

    def nbytes(self) -> int:
        """Bytes of the serialised index (what the store costs on disk and, about, in memory)."""
        if self.index is None:
            return 0
        faiss = _faiss()
        if self.kind == "binary":
            return int(faiss.serialize_index_binary(self.index).size)
        return int(faiss.serialize_index(self.index).size)

    def save(self, path: Path) -> None:
        faiss = _faiss()
        np.save(path.with_suffix(".deleted.npy"), self.deleted)
        if self.index is None:
            return
        if self.kind == "binary":
            faiss.write_index_binary(self.index, str(path))
        else:
            faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, kind: str, dim: int) -> VectorStore:
        faiss = _faiss()
        deleted_path = path.with_suffix(".deleted.npy")
        if not deleted_path.exists():
            raise DataError(deleted_path, None, "missing: not an index written by `mmctr retrieval index`")
        deleted = np.load(deleted_path, allow_pickle=False)
        index = None
        if path.exists():
            try:
                index = (
                    faiss.read_index_binary(str(path)) if kind == "binary" else faiss.read_index(str(path))
                )
            except RuntimeError as err:
                raise DataError(path, None, f"cannot be read as a FAISS index (truncated?): {err}") from None
            if kind == "ivfpq":
                index.nprobe = min(index.nlist, 16)
        store = cls(kind, dim, index, deleted)
        if store.ntotal != len(deleted):
            raise DataError(path, None, f"holds {store.ntotal} vectors but {len(deleted)} row flags")
        return store
