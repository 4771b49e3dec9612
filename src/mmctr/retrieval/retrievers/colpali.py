"""ColPali / ColQwen2 late interaction as a Track-1 retriever: a vision-language model turns a page
image into ~1,000 patch vectors and a question into one vector per token; a page scores

    score(q, page) = sum over the question's token vectors t of  max over the page's vectors v of  t.v

(MaxSim, as ColBERT; the model L2-normalises every vector, padding rows are dropped).

The model: `image_encoder` = `colpali:NAME_OR_PATH` or `colqwen:NAME_OR_PATH` (hub name or local
directory); anything else (the default `effnet`) means `DEFAULT_SPEC`. Two loaders:
- transformers' own `ColPaliForRetrieval` / `ColQwen2ForRetrieval` for checkpoints converted to
  them: hub names ending in `-hf` (`vidore/colpali-v1.3-hf`, `vidore/colqwen2-v1.0-hf`) and local
  directories whose config.json says model_type colpali or colqwen2. Nothing more to install
  (ColQwen2's image processor needs torchvision).
- colpali-engine (`pip install colpali-engine`) for the original checkpoints (`vidore/colpali-v1.3`,
  `vidore/colqwen2-v1.0`: PEFT adapters over a base model) and any other local directory.
Both give a processor with `process_queries` / `process_images` and a model whose output is the
token vectors, so everything after loading is one code path.

- MMDocIR: the question against the pages of its own document (page images; no page text).
- M2KR: a query with a question: the question (not the instruction, which is the same for every
  query of a kind) against each passage's page screenshot, seen whole as a page. Image-only queries:
  ColPali encodes text queries only, so they get the `image` retriever's ranking (EfficientNet-Lite0
  windows of the screenshots), stated in `timings["fallback"]`.
- Cache: token matrices (float16) per image content and per query text under
  `<cache dir>/late-<key>/`, the key hashing the model's identity and precision; a rerun loads no
  model. Rankings use the float16 vectors on the first run too, so a rerun ranks identically.
Storage and MaxSim are the `late` retriever's (`MultiVectors`, `maxsim`, `TokenCache`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.errors import ConfigError, DataError, MMCTRError
from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import (
    Retriever,
    RetrieverOptions,
    check_k,
    doc_candidates,
    new_timings,
    open_rgb,
    read_image_bytes,
    stopwatch,
    top_k,
)
from mmctr.retrieval.retrievers.clip import check_model_path
from mmctr.retrieval.retrievers.image import rank_image_only
from mmctr.retrieval.retrievers.late import MultiVectors, TokenCache, encode_queries

FAMILIES = {"colpali": "vidore/colpali-v1.3", "colqwen": "vidore/colqwen2-v1.0"}  # family -> default model
DEFAULT_SPEC = "colpali:vidore/colpali-v1.3"
_TRANSFORMERS_TYPES = {"colpali": "colpali", "colqwen2": "colqwen"}  # config.json model_type -> family
_CHUNK = 32  # images read, looked up in the cache and encoded (in model batches) together
FALLBACK = (
    "image-only queries ({n} of {total}): the image retriever's ranking (EfficientNet-Lite0 windows); "
    "ColPali encodes text queries only"
)


# ----------------------------------------------------------------------------------------------
# which model, loaded how


@dataclass(frozen=True)
class ColModelSpec:
    family: str  # colpali | colqwen
    name: str  # hub name or local directory
    loader: str  # transformers | colpali-engine


def _model_type(directory: Path) -> str | None:
    cfg = directory / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as err:
        raise DataError(cfg, "model_type", f"not readable ({err})") from None


def colpali_spec(options: RetrieverOptions) -> ColModelSpec:
    """The model `image_encoder` names (colpali:... / colqwen:...), or DEFAULT_SPEC."""
    from mmctr.encoders import parse_spec

    family, model = parse_spec(options.image_encoder)
    if family not in FAMILIES:
        family, model = parse_spec(DEFAULT_SPEC)
    name = model or FAMILIES[family]
    check_model_path(name, "retriever colpali")
    local = Path(name).expanduser()
    if local.is_dir():
        mtype = _model_type(local)
        if mtype in _TRANSFORMERS_TYPES:
            return ColModelSpec(_TRANSFORMERS_TYPES[mtype], str(local), "transformers")
        return ColModelSpec(family, str(local), "colpali-engine")
    return ColModelSpec(family, name, "transformers" if name.endswith("-hf") else "colpali-engine")


def _engine_classes(spec: ColModelSpec) -> tuple[Any, Any]:
    try:
        from colpali_engine import models as engine
    # not only ImportError: a torchvision built for another torch fails with a RuntimeError
    except Exception as err:
        raise ConfigError(
            f"retriever colpali: model {spec.name!r} is an original ColPali/ColQwen checkpoint, loaded by "
            f"colpali-engine, which could not be imported ({type(err).__name__}: {err}). "
            "pip install colpali-engine (it needs a torchvision built for the installed torch), or name a "
            "checkpoint converted to transformers, e.g. colpali:vidore/colpali-v1.3-hf"
        ) from None
    if spec.family == "colpali":
        return engine.ColPali, engine.ColPaliProcessor
    if "2.5" in spec.name or "2_5" in spec.name:
        return engine.ColQwen2_5, engine.ColQwen2_5_Processor
    return engine.ColQwen2, engine.ColQwen2Processor


class ColModel:
    """A loaded ColPali-family model and its processor, one interface over both loaders: token
    vectors of queries and of images, padding rows dropped, float16."""

    def __init__(self, model: Any, processor: Any, device: Any, batch_size: int):
        self.model, self.processor, self.device, self.batch_size = model, processor, device, batch_size

    def _embed(self, batch: Any) -> list[np.ndarray]:
        import torch

        batch = batch.to(self.device)
        with torch.inference_mode():
            out = self.model(**batch)
        emb = out if isinstance(out, torch.Tensor) else out.embeddings  # (B, L, dim)
        mask = batch["attention_mask"].bool()  # (B, L)
        return [emb[b][mask[b]].float().cpu().numpy().astype(np.float16) for b in range(emb.shape[0])]

    def query(self, text: str) -> np.ndarray:
        return self._embed(self.processor.process_queries([text]))[0]  # (n_tokens, dim)

    def images(self, images: list[Any]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for s in range(0, len(images), self.batch_size):
            out += self._embed(self.processor.process_images(images[s : s + self.batch_size]))
        return out


def load_col_model(spec: ColModelSpec, device: Any, precision: str, batch_size: int) -> ColModel:
    """The model and processor of `spec`, or a ConfigError naming the model and what to do."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if spec.loader == "transformers":
        from transformers import AutoProcessor, ColPaliForRetrieval, ColQwen2ForRetrieval

        model_cls: Any = ColPaliForRetrieval if spec.family == "colpali" else ColQwen2ForRetrieval
        proc_cls: Any = AutoProcessor
    else:
        model_cls, proc_cls = _engine_classes(spec)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        processor = proc_cls.from_pretrained(spec.name)
        model = model_cls.from_pretrained(spec.name, dtype=dtype).to(device).eval()
    except MMCTRError:
        raise
    except (OSError, ValueError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"retriever colpali: model {spec.name!r} could not be loaded by {spec.loader} ({first}); give a "
            "local directory holding the checkpoint, or a hub name this machine can reach"
        ) from None
    return ColModel(model, processor, device, batch_size)


# ----------------------------------------------------------------------------------------------
# the retriever


def _image_key(data: bytes) -> bytes:
    return hashlib.sha1(b"image\x1f" + data).digest()


def _query_key(text: str) -> bytes:
    return hashlib.sha1(b"query\x1f" + text.encode("utf-8")).digest()


class ColPaliRetriever(Retriever):
    name = "colpali"

    def __init__(self, options: RetrieverOptions | None = None):
        super().__init__(options)
        from mmctr.encoders.base import fingerprint, resolve_device, resolve_precision

        self.spec = colpali_spec(self.options)
        self.device = resolve_device(self.options.device)
        self.precision = resolve_precision(self.options.precision, self.device)
        self.batch_size = self.options.batch_size or (16 if self.device.type == "cuda" else 4)
        self.identity = {
            "family": self.spec.family,
            "model": fingerprint(self.spec.name),
            "loader": self.spec.loader,
            "precision": self.precision,
            "vectors": "colpali-output-unpadded-float16",
        }
        self.cache: TokenCache | None = None
        if self.options.use_cache:
            from mmctr.encoders.cache import default_cache_dir

            root = self.options.cache_dir if self.options.cache_dir is not None else default_cache_dir()
            self.cache = TokenCache(root, self.identity)
        self._model: ColModel | None = None
        self._image: Any = None  # the image retriever, for image-only M2KR queries
        self.load_seconds = 0.0

    @property
    def model(self) -> ColModel:
        if self._model is None:
            with stopwatch() as took:
                self._model = load_col_model(self.spec, self.device, self.precision, self.batch_size)
            self.load_seconds += took[0]
        return self._model

    # -- encoding through the cache ---------------------------------------------------------------

    def index_images(
        self, n: int, read: Callable[[int], tuple[bytes | None, Any, str, str]]
    ) -> tuple[MultiVectors, int]:
        """Token vectors of n images (an image that is None gets no vectors: it ranks last), and how
        many were read from the cache. `read(i)` gives (bytes, path for errors, field, who)."""
        from tqdm import tqdm

        mats: list[np.ndarray | None] = [None] * n
        from_cache = 0
        bar = tqdm(total=n, desc="page images", unit="image", disable=not self.options.progress)
        for s in range(0, n, _CHUNK):
            got = {i: read(i) for i in range(s, min(s + _CHUNK, n))}
            data = {i: g[0] for i, g in got.items() if g[0]}
            rows = list(data)
            keys = [_image_key(data[i]) for i in rows]
            hits = self.cache.lookup(keys) if self.cache is not None else [None] * len(rows)
            todo = [j for j, h in enumerate(hits) if h is None]
            for i, h in zip(rows, hits, strict=True):
                mats[i] = h
            from_cache += len(rows) - len(todo)
            if todo:
                imgs = []
                for j in todo:
                    _, path, field_name, who = got[rows[j]]
                    imgs.append(open_rgb(data[rows[j]], path, field_name, who))
                new = self.model.images(imgs)
                for j, m in zip(todo, new, strict=True):
                    mats[rows[j]] = m
                if self.cache is not None:
                    first = {keys[j]: m for j, m in zip(todo, new, strict=True)}  # one row per image
                    self.cache.put(list(first), list(first.values()))
            bar.update(len(got))
        bar.close()
        dim = next((m.shape[1] for m in mats if m is not None), 1)
        empty = np.zeros((0, dim), dtype=np.float16)
        return MultiVectors.stack([m if m is not None else empty for m in mats], dim), from_cache

    def queries(self, texts: list[str]) -> tuple[list[np.ndarray], list[float], int]:
        """(token vectors of each query, ms per query, read from the cache): cache reads are timed
        as one per query, the rest encoded one at a time, each timed."""
        # the model property loads it, outside the per-query clocks
        return encode_queries(
            self.cache,
            [_query_key(t) for t in texts],
            texts,
            lambda t: self.model.query(t),
            lambda: self.model,
        )

    def _fill_index(self, t: dict[str, Any], index: MultiVectors, seconds: float, loaded: float) -> None:
        t["load_seconds"] = self.load_seconds - loaded
        t["index_seconds"] = seconds - t["load_seconds"]
        t["index_bytes"] = index.nbytes
        t["vectors"] = int(index.vectors.shape[0])
        t["loader"] = self.spec.loader

    # -- MMDocIR ----------------------------------------------------------------------------------

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("docs")
        rows = doc_candidates(docs)
        # pages stored document by document, so a question's candidates are one block of rows
        order = [r for doc_rows in rows.values() for r in doc_rows]
        span: dict[str, tuple[int, int]] = {}
        start = 0
        for doc, doc_rows in rows.items():
            span[doc] = (start, start + len(doc_rows))
            start += len(doc_rows)

        def read(i: int) -> tuple[bytes | None, Any, str, str]:
            r = order[i]
            who = f"page {docs.pages.page_id[r]} of {docs.pages.doc_name[r]} (row {r})"
            return docs.pages.image(r), docs.source or None, "image", who

        loaded = self.load_seconds
        with stopwatch() as took:
            index, cached = self.index_images(len(order), read)
        self._fill_index(t, index, took[0], loaded)
        t["items_indexed"] = len(docs.pages)
        queries, ms, q_cached = self.queries([q.question for q in docs.questions])
        t["load_seconds"] = self.load_seconds - loaded
        t["from_cache"] = cached + q_cached
        t["encode_ms"] = ms
        if not index.vectors.shape[0]:
            t["fallback"] = "no page has an image: every page ties, the pages in document order"
        out: dict[str, list[str]] = {}
        for i, q in enumerate(docs.questions):
            with stopwatch() as search:
                a, b = span[q.doc_name]
                scores = index.scores(queries[i].astype(np.float32), a, b)  # (n_pages,)
                if not np.isfinite(scores).any():
                    scores = np.zeros(b - a, dtype=np.float32)
                best = top_k(scores, k)
            out[q.question_id] = [docs.pages.page_id[order[a + j]] for j in best]
            t["search_ms"].append(search[0] * 1000)
        return out

    # -- M2KR -------------------------------------------------------------------------------------

    @property
    def image(self) -> Any:
        if self._image is None:
            from mmctr.encoders import DEFAULT_IMAGE_ENCODER
            from mmctr.retrieval.retrievers.image import ImageRetriever

            self._image = ImageRetriever(
                dataclasses.replace(self.options, image_encoder=DEFAULT_IMAGE_ENCODER)
            )
        return self._image

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("passages")
        n = len(ps.queries)
        asked = [i for i, q in enumerate(ps.queries) if q.question]
        image_only = [i for i, q in enumerate(ps.queries) if not q.question]
        ids = ps.passages.passage_id
        encode_ms, search_ms = [0.0] * n, [0.0] * n
        ranked: dict[int, list[str]] = {}
        t["items_indexed"] = len(ps.passages)
        if asked:

            def read(i: int) -> tuple[bytes | None, Any, str, str]:
                path = ps.passages.screenshot[i]
                who = f"passage {ids[i]} (row {i})"
                data = read_image_bytes(path, "page_screenshot", who) if path is not None else None
                return data, path, "page_screenshot", who

            loaded = self.load_seconds
            with stopwatch() as took:
                index, cached = self.index_images(len(ps.passages), read)
            self._fill_index(t, index, took[0], loaded)
            queries, ms, q_cached = self.queries([ps.queries[i].question for i in asked])
            t["load_seconds"] = self.load_seconds - loaded
            t["from_cache"] = cached + q_cached
            for j, i in enumerate(asked):
                encode_ms[i] = ms[j]
                with stopwatch() as search:
                    scores = index.scores(queries[j].astype(np.float32))  # (n_passages,)
                    if not np.isfinite(scores).any():  # no screenshot anywhere: the pool order
                        scores = np.zeros(len(ids), dtype=np.float32)
                    best = top_k(scores, k)
                ranked[i] = [ids[r] for r in best]
                search_ms[i] = search[0] * 1000
        if image_only:
            rank_image_only(self.image, ps, image_only, k, ranked, encode_ms, search_ms, t)
            t["fallback"] = FALLBACK.format(n=len(image_only), total=n)
        t["encode_ms"], t["search_ms"] = encode_ms, search_ms
        return {q.question_id: ranked[i] for i, q in enumerate(ps.queries)}
