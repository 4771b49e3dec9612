"""A persistent Track-1 index: a directory people build once, search in milliseconds, and update
in place (`add`, `delete`) without re-encoding what is already there.

INDEX/manifest.json      kind, encoders, dimensions, counts
INDEX/items.jsonl        one line per row: id, doc, page, source, text (the metadata of a hit)
INDEX/text.faiss         one text vector per row (MiniLM of the page's text)
INDEX/image.faiss        window vectors (EfficientNet-Lite0 of the whole page and its crops),
INDEX/image_rows.npy     ... and the row each window belongs to: the multi-vector store
INDEX/*.deleted.npy      tombstones (rows and windows of deleted documents)

A text query is matched against the text vectors; an image query against every window, a row
scoring its best window (a photo shown inside a page is found by the crop that holds it); both
together are fused by reciprocal rank. Every write goes to a temporary directory that replaces
the index only when complete.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmctr import __version__
from mmctr.errors import ConfigError, DataError
from mmctr.outputs import OutputKind, check_out, move_into_place, temp_beside
from mmctr.retrieval.index.sources import Record
from mmctr.retrieval.index.vectors import KINDS, VectorStore

FORMAT = 1
INDEX_DIR = OutputKind(
    "index from `mmctr retrieval index`",
    lambda p: (p / "manifest.json").is_file() and (p / "items.jsonl").is_file(),
)
WINDOW_GRIDS = (1, 2)  # whole page + a 2-grid of squares: photos inside pages are found by a crop
RRF_K = 60.0


@dataclass
class Hit:
    rank: int
    id: str
    doc: str
    page: int
    source: str
    score: float
    matched: str  # "text" | "image" | "text+image"
    text: str  # the start of the page's text


def _options(text_encoder: str, image_encoder: str, cache_dir: Path | None):
    from mmctr.retrieval.retrievers import RetrieverOptions

    return RetrieverOptions(text_encoder=text_encoder, image_encoder=image_encoder, cache_dir=cache_dir)


class DocumentIndex:
    def __init__(
        self,
        kind: str = "flat",
        text_encoder: str = "minilm",
        image_encoder: str = "effnet",
        cache_dir: Path | None = None,
        progress: bool = False,
        images: bool = True,
    ):
        if kind not in KINDS:
            raise ConfigError(f"index kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kind, self.progress, self.images = kind, progress, images
        self.options = _options(text_encoder, image_encoder, cache_dir)
        self.items: list[dict] = []  # row -> metadata (with "deleted")
        self.text: VectorStore | None = None
        self.image: VectorStore | None = None
        self.image_rows = np.zeros(0, dtype=np.int64)
        self._text_embedder = None
        self._image_embedder = None

    # -- encoders (loaded on first use: loading an index to search it does not load a model twice) --

    @property
    def text_embedder(self):
        if self._text_embedder is None:
            from mmctr.retrieval.retrievers.base import TextEmbedder

            self._text_embedder = TextEmbedder(self.options)
        return self._text_embedder

    @property
    def image_embedder(self):
        if self._image_embedder is None:
            from mmctr.retrieval.retrievers.image import ImageEmbedder

            self._image_embedder = ImageEmbedder(self.options)
        return self._image_embedder

    def _windows(self, data: bytes | None, where: str) -> np.ndarray:
        """(w, D) vectors of a page image's windows; (0, D) when the page has no image."""
        from PIL import Image, UnidentifiedImageError

        from mmctr.retrieval.retrievers.image import windows

        if not data:
            return np.zeros((0, 0), dtype=np.float32)
        try:
            with Image.open(io.BytesIO(data)) as im:
                img = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(where, None, f"page image cannot be decoded: {err}") from None
        emb = self.image_embedder
        boxes = windows(img.width, img.height, WINDOW_GRIDS)
        pixels = np.stack([emb.pixels(img.crop(b)) for b in boxes])
        v = emb.encode(pixels)
        return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)

    # -- building and updating ----------------------------------------------------------------------

    def add(self, records: Iterable[Record]) -> int:
        """Encode and append records; an id already live in the index is an error."""
        live = {it["id"] for it in self.items if not it["deleted"]}
        new: list[Record] = []
        for r in tqdm(records, desc="reading pages", unit="page", disable=not self.progress):
            if r.id in live:
                raise DataError(r.source, None, f"id {r.id!r} is already in the index; --delete it first")
            live.add(r.id)
            new.append(r)
        if not new:
            return 0
        tv = self.text_embedder.items([r.text or " " for r in new]).matrix
        if self.text is None:
            self.text = VectorStore(self.kind, tv.shape[1])
        rows = self.text.add(tv)
        win_vecs, win_rows = [], []
        for r, row in tqdm(
            list(zip(new, rows, strict=True)),
            desc="encoding page images",
            unit="page",
            disable=not self.progress,
        ):
            v = self._windows(r.image(), r.source) if self.images else np.zeros((0, 0), np.float32)
            if len(v):
                win_vecs.append(v)
                win_rows.append(np.full(len(v), row, dtype=np.int64))
        if win_vecs:
            wv = np.concatenate(win_vecs)
            if self.image is None:
                self.image = VectorStore(self.kind, wv.shape[1])
            self.image.add(wv)
            self.image_rows = np.concatenate([self.image_rows, *win_rows])
        for r in new:
            self.items.append(
                {
                    "id": r.id,
                    "doc": r.doc,
                    "page": r.page,
                    "source": r.source,
                    "text": r.text,
                    "deleted": False,
                }
            )
        return len(new)

    def delete(self, names: Iterable[str]) -> int:
        """Tombstone every row whose doc or id is in `names`; returns rows deleted."""
        names = set(names)
        rows = [
            i
            for i, it in enumerate(self.items)
            if not it["deleted"] and (it["doc"] in names or it["id"] in names)
        ]
        if not rows:
            return 0
        for i in rows:
            self.items[i]["deleted"] = True
        self.text.delete(np.asarray(rows))
        if self.image is not None:
            self.image.delete(np.flatnonzero(np.isin(self.image_rows, rows)))
        return len(rows)

    @property
    def live(self) -> int:
        return sum(not it["deleted"] for it in self.items)

    # -- search -----------------------------------------------------------------------------------

    def search(self, query: str | None = None, image: bytes | None = None, k: int = 5) -> list[Hit]:
        if not query and not image:
            raise ConfigError("a search needs a text query, an image, or both")
        if k < 1:
            raise ConfigError("k must be at least 1")
        depth = max(50, k)
        ranked: dict[str, dict[int, float]] = {}
        if query and self.text is not None:
            q = self.text_embedder.queries([query]).matrix
            s, r = self.text.search(q, depth)
            ranked["text"] = {int(row): float(sc) for row, sc in zip(r[0], s[0], strict=True) if row >= 0}
        if image and self.image is not None:
            qv = self._windows(image, "--image")[:1]  # the whole query photo
            s, w = self.image.search(qv, depth * 8)  # windows: a row can hold several
            best: dict[int, float] = {}
            for win, sc in zip(w[0], s[0], strict=True):
                if win >= 0:
                    row = int(self.image_rows[win])
                    best.setdefault(row, float(sc))
            ranked["image"] = dict(list(best.items())[:depth])
        if len(ranked) == 2:
            fused: dict[int, float] = {}
            for lst in ranked.values():
                for pos, row in enumerate(lst):
                    fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + pos + 1)
            order = sorted(fused, key=lambda row: -fused[row])
            scores, how = fused, "text+image"
        else:
            ((how, scores),) = ranked.items() if ranked else (("text", {}),)
            order = list(scores)
        hits = []
        for rank, row in enumerate(order[:k], 1):
            it = self.items[row]
            hits.append(
                Hit(
                    rank,
                    it["id"],
                    it["doc"],
                    it["page"],
                    it["source"],
                    round(scores[row], 6),
                    how,
                    it["text"][:200],
                )
            )
        return hits

    # -- persistence --------------------------------------------------------------------------------

    def manifest(self) -> dict:
        return {
            "format": FORMAT,
            "mmctr_version": __version__,
            "kind": self.kind,
            "text_encoder": self.options.text_encoder,
            "image_encoder": self.options.image_encoder,
            "image_size": self.options.image_size,
            "window_grids": list(WINDOW_GRIDS),
            "images": self.images,
            "text_dim": self.text.dim if self.text else None,
            "image_dim": self.image.dim if self.image else None,
            "rows": len(self.items),
            "live": self.live,
            "windows": int(len(self.image_rows)),
            "bytes": {
                "text": self.text.nbytes() if self.text else 0,
                "image": self.image.nbytes() if self.image else 0,
            },
        }

    def save(self, out: Path, overwrite: bool = False) -> Path:
        out = Path(out)
        check_out(out, INDEX_DIR, overwrite)
        tmp = temp_beside(out)
        tmp.mkdir()
        try:
            with open(tmp / "items.jsonl", "w") as f:
                for it in self.items:
                    f.write(json.dumps(it) + "\n")
            if self.text is not None:
                self.text.save(tmp / "text.faiss")
            if self.image is not None:
                self.image.save(tmp / "image.faiss")
                np.save(tmp / "image_rows.npy", self.image_rows)
            (tmp / "manifest.json").write_text(json.dumps(self.manifest(), indent=2))
            move_into_place(tmp, out, INDEX_DIR, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    @classmethod
    def load(cls, path: Path, cache_dir: Path | None = None, progress: bool = False) -> DocumentIndex:
        path = Path(path)
        if not INDEX_DIR.recognise(path):
            raise DataError(
                path,
                None,
                "not an index (manifest.json, items.jsonl); build one with `mmctr retrieval index`",
            )
        m = json.loads((path / "manifest.json").read_text())
        if m.get("format") != FORMAT:
            raise DataError(
                path / "manifest.json", "format", f"is {m.get('format')!r}; this mmctr reads {FORMAT}"
            )
        index = cls(
            m["kind"], m["text_encoder"], m["image_encoder"], cache_dir, progress, m.get("images", True)
        )
        index.options.image_size = m.get("image_size")
        with open(path / "items.jsonl") as f:
            index.items = [json.loads(line) for line in f if line.strip()]
        if m.get("text_dim"):
            index.text = VectorStore.load(path / "text.faiss", m["kind"], m["text_dim"])
        if m.get("image_dim"):
            index.image = VectorStore.load(path / "image.faiss", m["kind"], m["image_dim"])
            index.image_rows = np.load(path / "image_rows.npy", allow_pickle=False)
        if index.text is not None and index.text.ntotal != len(index.items):
            raise DataError(
                path / "items.jsonl", None, f"{len(index.items)} rows but {index.text.ntotal} text vectors"
            )
        return index


def timed_load(path: Path) -> tuple[DocumentIndex, float]:
    t0 = time.perf_counter()
    index = DocumentIndex.load(path)
    return index, (time.perf_counter() - t0) * 1000


def hit_dicts(hits: list[Hit]) -> list[dict]:
    return [asdict(h) for h in hits]
