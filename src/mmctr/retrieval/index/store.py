"""A persistent Track-1 index: a directory people build once, search in milliseconds, and update
in place (`add`, `delete`) without re-encoding what is already there.

INDEX/manifest.json      kind, encoders, dimensions, counts
INDEX/items.jsonl        one line per row: id, doc, page, source, text (the metadata of a hit)
INDEX/text.faiss         one text vector per row (MiniLM of the page's text)
INDEX/image.faiss        window vectors (EfficientNet-Lite0 of the whole page and its crops),
INDEX/image_rows.npy     ... and the row each window belongs to: the multi-vector store
INDEX/*.deleted.npy      tombstones (rows and windows of deleted documents)
INDEX/center.npy         with a run: the mean window vector the windows are centred on

A text query is matched against the text vectors; an image query against every window, a row
scoring its best window (a photo shown inside a page is found by the crop that holds it); both
together are fused by reciprocal rank. Every write goes to a temporary directory that replaces
the index only when complete.

Built with a trained run (`run=RUN`, `mmctr retrieval train --out RUN`), the stores hold the run's
candidate-tower vectors instead: `doc_text` of each page's MiniLM vector, and `image` of its window
vectors centred on the mean window of the indexed pool and normalised, with the run's crop grids
and image size (what the model was trained on). Queries go through its query tower. The centre is
computed by the first build and kept by later adds, so adding documents does not move the vectors
already stored and results stay reproducible; a rebuild recomputes it. A text+photo query is fused
by the model's own field weights for such a query, w_text * cos + w_image * MaxSim (`towers.py`),
not by rank: the model learnt those weights for that sum. The index has no BM25, so the model's
sparse fields are left out. The manifest records the run's path and the sha256 of its weights;
loading refuses a run that moved or changed.

Built with a distilled run (`mmctr retrieval distill --out RUN`), `text.faiss` holds the student's
one vector per page or passage: its candidate tower over the frozen token vectors of the text
encoder the run recorded (the `late` retriever's token cache, so pages it has seen are not encoded
again), and a text query goes through its query tower. The student has no image tower, so such an
index has no image store: a text+image query is answered by its text (hits say `matched: "text"`),
an image-only one is refused with a `ConfigError` naming `image`. The manifest (format 3) records
the run as above, with its kind.
"""

from __future__ import annotations

import hashlib
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
from mmctr.retrieval.index.towers import (
    DistilledTowers,
    RunTowers,
    Towers,
    load_towers,
    unit,
)
from mmctr.retrieval.index.vectors import KINDS, VectorStore

# 1: MiniLM / EfficientNet vectors; 2: a two-tower run's vectors; 3: a distilled run's (an older
# mmctr must not read them as another)
FORMAT, FORMAT_RUN, FORMAT_DISTILLED = 1, 2, 3
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
        run: Path | Towers | None = None,
    ):
        """`run`: a trained or distilled run directory (or its loaded towers) whose vectors the index
        stores; its encoder options replace `text_encoder` / `image_encoder`. A distilled run's index
        holds text vectors only, whatever `images` says."""
        if kind not in KINDS:
            raise ConfigError(f"index kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kind, self.progress, self.images = kind, progress, images
        self.options = _options(text_encoder, image_encoder, cache_dir)
        self.towers = run if isinstance(run, RunTowers | DistilledTowers) or run is None else load_towers(run)
        self.distilled = isinstance(self.towers, DistilledTowers)
        if self.distilled:
            self.images = False  # the student has no image tower
        self.grids = WINDOW_GRIDS
        if self.towers is not None:
            self.options = self.towers.retriever_options(self.options)
            self.grids = self.options.crop_grids
        self.center: np.ndarray | None = None  # with a run: (Di,) mean raw window, fixed once set
        self.items: list[dict] = []  # row -> metadata (with "deleted")
        self.text: VectorStore | None = None
        self.image: VectorStore | None = None
        self.image_rows = np.zeros(0, dtype=np.int64)
        self._text_embedder = None
        self._image_embedder = None
        self._token_encoder = None

    # -- encoders (loaded on first use: loading an index to search it does not load a model twice) --

    @property
    def text_embedder(self):
        if self._text_embedder is None:
            from mmctr.retrieval.retrievers.base import TextEmbedder

            self._text_embedder = TextEmbedder(self.options)
        return self._text_embedder

    @property
    def token_encoder(self):
        """Token vectors for a distilled run's student (the `late` retriever's encoder and cache)."""
        if self._token_encoder is None:
            from mmctr.retrieval.retrievers.late import TokenEncoder

            self._token_encoder = TokenEncoder(self.options)
        return self._token_encoder

    def _text_vectors(self, texts: list[str], query: bool = False) -> np.ndarray:
        """(n, D) what the text store holds for candidate texts (or searches with, for queries):
        unit MiniLM vectors, a two-tower run's tower vectors of them, or a distilled run's student
        vectors of their token vectors."""
        if self.distilled:
            enc = self.token_encoder
            if query:
                return self.towers.query_tokens(enc.queries(texts).mats)
            return self.towers.doc_tokens(enc.items(texts).mats)
        emb = self.text_embedder
        tv = emb.queries(texts).matrix if query else emb.items(texts).matrix
        if self.towers is None:
            return tv
        return self.towers.query_text(tv) if query else self.towers.doc_text(tv)

    @property
    def image_embedder(self):
        if self._image_embedder is None:
            from mmctr.retrieval.retrievers.image import ImageEmbedder

            self._image_embedder = ImageEmbedder(self.options)
        return self._image_embedder

    def _raw_windows(self, data: bytes | None, where: str, whole: bool = False) -> np.ndarray:
        """(w, D) raw encoder vectors of an image's windows, the whole image first (only it with
        `whole`); (0, 0) when there is no image. Read from and written to the embedding cache under
        the image retriever's keys, so pages it has seen are not encoded again."""
        from PIL import Image, UnidentifiedImageError

        from mmctr.retrieval.retrievers.image import _box_key, windows

        if not data:
            return np.zeros((0, 0), dtype=np.float32)
        try:
            with Image.open(io.BytesIO(data)) as im:
                img = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(where, None, f"page image cannot be decoded: {err}") from None
        emb = self.image_embedder
        boxes = [(0, 0, img.width, img.height)] if whole else windows(img.width, img.height, self.grids)
        digest = hashlib.sha1(data).digest()
        keys = [_box_key(digest, b) for b in boxes]
        found, hit = emb.cache.lookup(keys) if emb.cache is not None else (np.zeros(len(keys), bool), None)
        need = np.flatnonzero(~found)
        new = emb.encode(np.stack([emb.pixels(img.crop(boxes[j])) for j in need])) if len(need) else None
        dim = hit.shape[1] if hit is not None else new.shape[1]
        v = np.zeros((len(boxes), dim), dtype=np.float32)
        if hit is not None:
            v[found] = hit
        if new is not None:
            v[need] = new
            if emb.cache is not None:
                emb.cache.put([keys[j] for j in need], new)
        return v

    def _project_windows(self, raw: np.ndarray) -> np.ndarray:
        """What the image store holds for raw window (or photo) vectors: unit vectors, or with a run
        its image tower's vectors of them centred on `center`."""
        if self.towers is None:
            return unit(raw)
        assert self.center is not None
        return self.towers.image(raw, self.center)

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
        tv = self._text_vectors([r.text or " " for r in new])
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
            v = self._raw_windows(r.image(), r.source) if self.images else np.zeros((0, 0), np.float32)
            if len(v):
                win_vecs.append(v)
                win_rows.append(np.full(len(v), row, dtype=np.int64))
        if win_vecs:
            raw = np.concatenate(win_vecs)
            if self.towers is not None and self.center is None:
                self.center = raw.mean(axis=0)  # the first build's pool; later adds keep it
            wv = self._project_windows(raw)
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
        if self.distilled and not query:
            raise ConfigError(
                f"image: this index holds a distilled run's text vectors only ({self.towers.path} has no "
                "image tower), so it cannot search by image alone; send a text query"
            )
        depth = max(50, k)
        ranked: dict[str, dict[int, float]] = {}
        q_raw = None
        if query and self.text is not None:
            if isinstance(self.towers, RunTowers):
                q_raw = self.text_embedder.queries([query]).matrix  # the field weights read it too
                q = self.towers.query_text(q_raw)
            else:
                q = self._text_vectors([query], query=True)
            s, r = self.text.search(q, depth)
            ranked["text"] = {int(row): float(sc) for row, sc in zip(r[0], s[0], strict=True) if row >= 0}
        if image and self.image is not None:
            qv = self._project_windows(self._raw_windows(image, "--image", whole=True))
            s, w = self.image.search(qv, depth * 8)  # windows: a row can hold several
            best: dict[int, float] = {}
            for win, sc in zip(w[0], s[0], strict=True):
                if win >= 0:
                    row = int(self.image_rows[win])
                    best.setdefault(row, float(sc))
            ranked["image"] = dict(list(best.items())[:depth])
        if len(ranked) == 2 and isinstance(self.towers, RunTowers):
            scores, how = self._weighted(ranked, q_raw), "text+image"
            order = sorted(scores, key=lambda row: (-scores[row], row))
        elif len(ranked) == 2:
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

    def _weighted(self, ranked: dict[str, dict[int, float]], q_raw: np.ndarray) -> dict[int, float]:
        """w_text * text score + w_image * image score over the rows either list found, with the
        run's field weights for the query. A row missing from one list gets that list's lowest score
        (its own is at most that); binary stores' scores are scaled to [-1, 1] like cosines."""
        w_text, w_image = self.towers.fusion_weights(q_raw[0])
        parts = []
        for name, store, weight in (("text", self.text, w_text), ("image", self.image, w_image)):
            scale = 1.0 / store.index.d if store.kind == "binary" and store.index is not None else 1.0
            got = {row: sc * scale for row, sc in ranked[name].items()}
            parts.append((got, min(got.values(), default=0.0), weight))
        rows = {row for got, _, _ in parts for row in got}
        return {row: sum(w * got.get(row, floor) for got, floor, w in parts) for row in rows}

    # -- persistence --------------------------------------------------------------------------------

    def manifest(self) -> dict:
        m = {
            "format": FORMAT if self.towers is None else FORMAT_DISTILLED if self.distilled else FORMAT_RUN,
            "mmctr_version": __version__,
            "kind": self.kind,
            "text_encoder": self.options.text_encoder,
            "image_encoder": self.options.image_encoder,
            "image_size": self.options.image_size,
            "window_grids": list(self.grids),
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
        if self.distilled:
            m["run"] = self.towers.manifest_entry()
        elif self.towers is not None:
            m["run"] = {**self.towers.manifest_entry(), "fusion": "field weights"}
            m["center"] = "center.npy" if self.center is not None else None
        return m

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
            if self.center is not None:
                np.save(tmp / "center.npy", self.center)
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
        if m.get("format") not in (FORMAT, FORMAT_RUN, FORMAT_DISTILLED):
            raise DataError(
                path / "manifest.json",
                "format",
                f"is {m.get('format')!r}; this mmctr reads {FORMAT}, {FORMAT_RUN} and {FORMAT_DISTILLED}",
            )
        towers = None
        if m["format"] == FORMAT_RUN:
            towers = RunTowers.recorded_in(m.get("run"), path / "manifest.json")
        elif m["format"] == FORMAT_DISTILLED:
            towers = DistilledTowers.recorded_in(m.get("run"), path / "manifest.json")
        index = cls(
            m["kind"],
            m["text_encoder"],
            m["image_encoder"],
            cache_dir,
            progress,
            m.get("images", True),
            run=towers,
        )
        index.options.image_size = m.get("image_size")
        if m.get("center"):
            if not (path / m["center"]).is_file():
                raise DataError(path / m["center"], None, "missing: the run-built index's window centre")
            index.center = np.load(path / m["center"], allow_pickle=False)
        with open(path / "items.jsonl") as f:
            index.items = [json.loads(line) for line in f if line.strip()]
        if m.get("text_dim"):
            index.text = VectorStore.load(path / "text.faiss", m["kind"], m["text_dim"])
        if m.get("image_dim"):
            index.image = VectorStore.load(path / "image.faiss", m["kind"], m["image_dim"])
            index.image_rows = np.load(path / "image_rows.npy", allow_pickle=False)
            if towers is not None and index.center is None:
                raise DataError(path / "manifest.json", None, "a run-built index with windows needs 'center'")
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
