"""CLIP as a Track-1 retriever: one checkpoint, by hub name or local directory, for both towers.

The checkpoint is the one `image_encoder` or `text_encoder` names as `clip:NAME_OR_PATH` (the
other field may keep its default); when neither does, `DEFAULT_SPEC`. Both towers share one loaded
model (Task 1's `mmctr.encoders.clip`), and vectors go through the same content-keyed cache as
every other retriever's.

- MMDocIR, cross-modal: the CLIP text vector of the question against the CLIP image vector of each
  page image of its document, cosine. No page text is read: this measures what the picture of a
  page alone tells. Pages are letterboxed on white to a square, so the whole page is seen (CLIP's
  own centre crop would cut the top and bottom of a portrait page). A page without an image ranks
  below every page with one.
- M2KR: the query photo against windows of each passage screenshot, exactly as the `image`
  retriever scores them (windows, vectors centred on the mean window, best window per passage)
  with CLIP as its encoder; plus, for queries with a question, `TEXT_WEIGHT` x the cosine of the
  question's CLIP text vector and the passage text's (CLIP reads 77 tokens: the title and lead).
  The question alone is encoded, not the instruction: it is the same for every query of a kind and
  would take a share of the 77 tokens. `TEXT_WEIGHT` is 0.5 because the photo is the evidence that
  names the entity and the question only narrows it; it was not tuned (no real CLIP weights can be
  downloaded where this was written).

Resolution: CLIP's position embeddings were trained at one input size, so it runs at its
checkpoint's size; `image_size` is honoured only when set to something other than the options'
default (the EfficientNet setting).
"""

from __future__ import annotations

import dataclasses
import hashlib
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mmctr.errors import ConfigError, MMCTRError
from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import (
    Retriever,
    RetrieverOptions,
    TextEmbedder,
    check_k,
    doc_candidates,
    new_timings,
    open_rgb,
    stopwatch,
    top_k,
)
from mmctr.retrieval.retrievers.image import ImageRetriever, _box_key

DEFAULT_SPEC = "clip:openai/clip-vit-base-patch32"
TEXT_WEIGHT = 0.5  # M2KR: weight of question-passage text cosine beside the photo-window cosine
_WHOLE = (-1, -1, -1, -1)  # cache box of a whole letterboxed image (as the image retriever's query photos)
_CHUNK = 32  # page images read, looked up in the cache and encoded together
_MODEL_CODE = ("transformers", "huggingface_hub", "colpali_engine", "peft", "safetensors")


# ----------------------------------------------------------------------------------------------
# which checkpoint, and errors that name it


def check_model_path(name: str, who: str) -> None:
    """A model given as a path (absolute, ./, ../, ~) must exist: otherwise the hub would be asked
    for it and answer with an error about repository ids."""
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise ConfigError(f"{who}: model directory {name} not found; give a local directory or a hub name")


def _in_model_code(err: BaseException) -> bool:
    return any(
        f"/{pkg}/" in frame.filename
        for frame in traceback.extract_tb(err.__traceback__)
        for pkg in _MODEL_CODE
    )


@contextmanager
def model_load_errors(who: str, name: str, loaded: Callable[[], bool]) -> Iterator[None]:
    """Turn a failure to fetch or read a checkpoint into a ConfigError naming it. Only errors raised
    inside the model libraries before the model is loaded count: an OSError of our own (an image
    file, a cache write) keeps its own meaning."""
    try:
        yield
    except MMCTRError:
        raise
    except (OSError, ValueError) as err:
        if loaded() or not _in_model_code(err):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"{who}: model {name!r} could not be loaded ({first}); give a local directory holding the "
            "checkpoint, or a hub name this machine can reach (HF_HUB_OFFLINE=1 fails fast without network)"
        ) from None


def clip_spec(options: RetrieverOptions) -> str:
    """`clip:MODEL` from whichever of image_encoder / text_encoder names a CLIP checkpoint."""
    from mmctr.encoders import ENCODERS
    from mmctr.encoders import parse_spec as parse

    named: dict[str, str] = {}
    for field_name in ("image_encoder", "text_encoder"):
        family, model = parse(getattr(options, field_name))
        if family == "clip":
            named[field_name] = model or ENCODERS["clip"].default_model or ""
    if len(set(named.values())) > 1:
        raise ConfigError(
            f"retriever clip: image_encoder names clip:{named['image_encoder']} and text_encoder "
            f"clip:{named['text_encoder']}; the cross-modal scores need one checkpoint for both towers"
        )
    return f"clip:{next(iter(named.values()))}" if named else DEFAULT_SPEC


# ----------------------------------------------------------------------------------------------
# the retriever


class CLIPRetriever(Retriever):
    name = "clip"

    def __init__(self, options: RetrieverOptions | None = None):
        super().__init__(options)
        self.spec = clip_spec(self.options)
        self.model_name = self.spec.partition(":")[2]
        check_model_path(self.model_name, "retriever clip")
        default_size = RetrieverOptions().image_size
        size = None if self.options.image_size == default_size else self.options.image_size
        self._options = dataclasses.replace(
            self.options, image_encoder=self.spec, text_encoder=self.spec, image_size=size
        )
        self._images: ImageRetriever | None = None  # windows, query photos and page images
        self._text: TextEmbedder | None = None

    def _loaded(self) -> bool:
        """Both towers loaded: from then on an error is not about finding the checkpoint."""
        if self._images is None or self._text is None:
            return False
        return self._images.embedder.encoder.loaded and self._text.encoder.loaded

    @contextmanager
    def _model_errors(self) -> Iterator[None]:
        with model_load_errors("retriever clip", self.model_name, self._loaded):
            yield

    def _parts(self) -> tuple[ImageRetriever, TextEmbedder]:
        if self._images is None or self._text is None:
            with self._model_errors():
                images = ImageRetriever(self._options)
                _ = images.embedder  # reads the checkpoint's image processor: a bad name fails here
                self._images, self._text = images, TextEmbedder(self._options)
        assert self._images is not None and self._text is not None
        return self._images, self._text

    def _load_seconds(self) -> float:
        images, text = self._parts()
        return images.embedder.load_seconds + text.load_seconds

    # -- MMDocIR ----------------------------------------------------------------------------------

    def page_vectors(self, docs: DocSet) -> tuple[np.ndarray, np.ndarray, int]:
        """(L2-normalised CLIP image vectors of every page (n_pages, D), whether each page has an
        image (n_pages,), vectors read from the cache). Pages without an image get zeros."""
        from tqdm import tqdm

        emb = self._parts()[0].embedder
        n = len(docs.pages)
        has = np.zeros(n, dtype=bool)
        done_rows: list[int] = []
        done_vecs: list[np.ndarray] = []
        from_cache = 0
        bar = tqdm(total=n, desc="page images", unit="page", disable=not self.options.progress)
        for s in range(0, n, _CHUNK):
            data = {r: docs.pages.image(r) for r in range(s, min(s + _CHUNK, n))}
            bar.update(len(data))
            rows = [r for r, d in data.items() if d]
            if not rows:
                continue
            has[rows] = True
            keys = [_box_key(hashlib.sha1(data[r]).digest(), _WHOLE) for r in rows]
            found = np.zeros(len(rows), dtype=bool)
            if emb.cache is not None:
                found, hit = emb.cache.lookup(keys)
                if hit is not None:
                    done_rows += [rows[j] for j in np.flatnonzero(found)]
                    done_vecs.append(hit)
                    from_cache += len(hit)
            todo = np.flatnonzero(~found)
            if len(todo):
                pix = []
                for j in todo:
                    r = rows[j]
                    who = f"page {docs.pages.page_id[r]} of {docs.pages.doc_name[r]} (row {r})"
                    pix.append(emb.pixels(open_rgb(data[r], docs.source or None, "image", who)))
                bs = emb.encoder.batch_size
                new = np.concatenate([emb.encode(np.stack(pix[b : b + bs])) for b in range(0, len(pix), bs)])
                if emb.cache is not None:
                    emb.cache.put([keys[j] for j in todo], new)
                done_rows += [rows[j] for j in todo]
                done_vecs.append(new)
        bar.close()
        if not done_rows:
            return np.zeros((n, 1), dtype=np.float32), has, 0
        found_vecs = np.concatenate(done_vecs)  # (n_with_image, D)
        vecs = np.zeros((n, found_vecs.shape[1]), dtype=np.float32)
        vecs[done_rows] = found_vecs
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12
        return vecs, has, from_cache

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("docs")
        rows = doc_candidates(docs)
        _, text = self._parts()
        loaded = self._load_seconds()
        with self._model_errors():
            with stopwatch() as took:
                pages, has, cached = self.page_vectors(docs)
            t["index_seconds"] = took[0] - (self._load_seconds() - loaded)
            queries = text.queries([q.question for q in docs.questions])
        t["load_seconds"] = self._load_seconds() - loaded
        t["items_indexed"] = len(docs.pages)
        t["index_bytes"] = int(pages.nbytes)
        t["from_cache"] = cached + queries.from_cache
        t["encode_ms"] = list(queries.encode_ms)
        if not has.any():
            t["fallback"] = "no page has an image: every page ties, the pages in document order"
        out: dict[str, list[str]] = {}
        for i, q in enumerate(docs.questions):
            with stopwatch() as search:
                cand = np.asarray(rows[q.doc_name])
                scores = pages[cand] @ queries.matrix[i] if has.any() else np.zeros(len(cand), np.float32)
                scores = np.where(has[cand], scores, -np.inf)  # (n_pages,)
                best = cand[top_k(scores, k)]
            out[q.question_id] = [docs.pages.page_id[r] for r in best]
            t["search_ms"].append(search[0] * 1000)
        return out

    # -- M2KR -------------------------------------------------------------------------------------

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        t = self.timings = new_timings("passages")
        images, text = self._parts()
        loaded = self._load_seconds()
        asked = [i for i, q in enumerate(ps.queries) if q.question]
        with self._model_errors():
            with stopwatch() as took:
                raw, owner, center, cached = images.index_passages(ps)
                windows_ = raw - center
                windows_ /= np.linalg.norm(windows_, axis=1, keepdims=True) + 1e-12
                passages = text.items([x or "" for x in ps.passages.text]) if asked else None
            t["index_seconds"] = took[0] - (self._load_seconds() - loaded)
            n_q = len(ps.queries)
            if len(owner):
                photos, photo_ms, photo_cached = images.query_vectors(ps, center)
            else:  # no passage has a screenshot: the photos can score nothing
                photos, photo_ms, photo_cached = np.zeros((n_q, 1), np.float32), [0.0] * n_q, 0
                t["fallback"] = "no passage has a screenshot: ranked by the question text alone"
            questions = text.queries([ps.queries[i].question for i in asked]) if asked else None
        t["load_seconds"] = self._load_seconds() - loaded
        t["items_indexed"] = len(ps.passages)
        t["index_bytes"] = int(windows_.nbytes + owner.nbytes + (passages.matrix.nbytes if passages else 0))
        t["windows"] = int(len(owner))
        t["encode_ms"] = list(photo_ms)
        t["from_cache"] = cached + photo_cached
        q_of: dict[int, int] = {}
        if questions is not None and passages is not None:
            t["from_cache"] += passages.from_cache + questions.from_cache
            for j, i in enumerate(asked):
                q_of[i] = j
                t["encode_ms"][i] += questions.encode_ms[j]
        n = len(ps.passages)
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, int)
        ids = ps.passages.passage_id
        out: dict[str, list[str]] = {}
        for r, q in enumerate(ps.queries):
            with stopwatch() as search:
                # a passage without a screenshot gets the lowest cosine: last, unless its text lifts it
                scores = np.full(n, -1.0, dtype=np.float32)
                if len(owner):
                    scores[owner[starts]] = np.maximum.reduceat(windows_ @ photos[r], starts)  # (n_shots,)
                if r in q_of:
                    scores += TEXT_WEIGHT * (passages.matrix @ questions.matrix[q_of[r]])  # type: ignore[union-attr]
                best = top_k(scores, k)
            out[q.question_id] = [ids[j] for j in best]
            t["search_ms"].append(search[0] * 1000)
        return out
