"""Track 1 retrievers: every registered one on tiny hand-built data (right candidates, k ids,
deterministic, timings filled), BM25 on exact text, image features and instance matching on a
screenshot holding a transformed copy of the query photo, RRF on hand-made rankings, the
embedding cache, and named errors for missing images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from mmctr.errors import ConfigError, DataError
from mmctr.retrieval.data.types import (
    DocPages,
    DocQuestion,
    DocSet,
    ImageQuery,
    Passages,
    PassageSet,
)
from mmctr.retrieval.retrievers import RETRIEVERS, RetrieverOptions, build_retriever
from mmctr.retrieval.retrievers.hybrid import rrf
from mmctr.retrieval.retrievers.image import windows

# What runs on generated data with default options: `trained`, `hybrid_trained` and `distilled` need
# a run (tests/test_retrieval_trained.py, tests/test_retrieval_distill.py), clip and colpali model
# weights (tests/test_retrieval_models.py).
PLAIN = [n for n in RETRIEVERS if n not in ("trained", "hybrid_trained", "distilled", "clip", "colpali")]

N_PHOTOS = 6
KINDS = ("image", "image", "image_question", "image_question", "wit", "wit")

# VLM and OCR texts differ on purpose: a question copied from page 2's OCR text reads like the
# VLM description of page 1, so BM25 on the two fields must disagree.
PAGES = {
    "report_a": [
        ("cover page with the annual report title and a harbour photograph", "ANNUAL REPORT 2023 harbour"),
        ("bar chart of quarterly revenue growth across regional wind farms", "turbine maintenance schedule"),
        (
            "table listing turbine maintenance schedule and technician shifts",
            "revenue growth quarterly chart",
        ),
        ("figure of a coastal map with offshore cable routes", "cable routes map legend"),
    ],
    "manual_b": [
        ("safety instructions for the espresso machine boiler", "boiler safety warnings"),
        ("diagram of the grinder burr assembly and calibration dial", "grinder burr calibration"),
        ("troubleshooting table for pump pressure errors", "pump pressure error codes"),
    ],
}


def _photo(seed: int) -> Image.Image:
    """A textured 'photo' of its own kind (stripes, checks, rings, blobs on a gradient) with random
    shapes on top (corners for ORB): different photos differ as much as photos of different things."""
    rng = np.random.default_rng(seed)
    w, h = 120, 90
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
    pattern = [
        np.sin(xx / (3 + seed)) > 0,  # vertical stripes
        ((xx // 12 + yy // 12) % 2) == 0,  # checks
        np.sin(np.hypot(xx - 60, yy - 45) / 4) > 0,  # rings
        np.sin((xx + yy) / 5) > 0,  # diagonal stripes
        xx > w / 2,  # two halves
        np.hypot(xx - 30, yy - 30) < 25,  # a disc
    ][seed % 6]
    rgb = np.where(pattern[..., None], c0, c1).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        x1, y1 = x0 + int(rng.integers(6, 30)), y0 + int(rng.integers(6, 24))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            d.rectangle((x0, y0, x1, y1), fill=color)
        else:
            d.ellipse((x0, y0, x1, y1), fill=color)
    return img


def _screenshot(photo: Image.Image, seed: int) -> Image.Image:
    """A white 'page' of grey text lines holding a scaled, rotated, brightened copy of `photo`."""
    rng = np.random.default_rng(1000 + seed)
    page = Image.new("RGB", (320, 480), (255, 255, 255))
    d = ImageDraw.Draw(page)
    for y in range(20, 470, 14):
        x = 16
        while x < 300:
            n = int(rng.integers(8, 40))
            d.rectangle((x, y, min(x + n, 304), y + 6), fill=(90, 90, 90))
            x += n + 6
    copy = (
        ImageEnhance.Brightness(photo.resize((200, 150)))
        .enhance(1.15)
        .rotate(4, expand=True, fillcolor="white")
    )
    page.paste(copy, (int(rng.integers(10, 100)), int(rng.integers(10, 300))))
    return page


@pytest.fixture(scope="module")
def docs() -> DocSet:
    doc_name, page_id, vlm, ocr = [], [], [], []
    for d, pages in PAGES.items():
        for i, (v, o) in enumerate(pages):
            doc_name.append(d)
            page_id.append(str(i))
            vlm.append(v)
            ocr.append(o)
    questions = [
        DocQuestion("10000", "table listing turbine maintenance schedule and technician shifts", "report_a"),
        DocQuestion("10001", "grinder burr calibration", "manual_b"),
        DocQuestion("10002", "turbine maintenance schedule", "report_a"),
        DocQuestion("10003", "what does the pump pressure error mean", "manual_b"),
    ]
    pages = DocPages(doc_name, page_id, ocr, vlm, image=lambda i: None)
    return DocSet(questions, pages, source="fixture")


def build_passages(d: Path) -> PassageSet:
    """Six photos, six screenshots each holding a transformed copy of one, and a seventh passage
    without a screenshot, written under `d`."""
    queries, shots, texts, ids = [], [], [], []
    # passage order is not query order, so "row i answers query i" cannot pass by accident
    order = [3, 0, 5, 1, 4, 2]
    for j in order:
        _screenshot(_photo(j), j).save(d / f"shot{j}.png")
        shots.append(d / f"shot{j}.png")
        texts.append(f"Wikipedia article number {j} about subject{j} history and facts")
        ids.append(f"WIT_{j}")
    for j in range(N_PHOTOS):
        _photo(j).rotate(2, fillcolor="white").save(d / f"q{j}.jpg", quality=90)
        question = f"what is the history of subject{j}" if KINDS[j] == "image_question" else ""
        queries.append(
            ImageQuery(str(j), question, "Find the document for this image.", d / f"q{j}.jpg", KINDS[j])
        )
    # a seventh passage without a screenshot: image retrievers rank it last
    ids.append("WIT_none")
    texts.append("a passage without a screenshot")
    shots.append(None)
    return PassageSet(queries, Passages(ids, texts, shots), source="fixture")


@pytest.fixture(scope="module")
def passages(tmp_path_factory: pytest.TempPathFactory) -> PassageSet:
    return build_passages(tmp_path_factory.mktemp("m2kr"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _opts(cache_dir: Path, **kw) -> RetrieverOptions:
    return RetrieverOptions(**{"cache_dir": cache_dir, "device": "cpu", "match_candidates": 4, **kw})


@pytest.fixture(scope="module")
def results(docs: DocSet, passages: PassageSet, cache_dir: Path) -> dict[str, tuple]:
    """Every registered retriever run twice on both tasks (the second run reads the cache)."""
    out = {}
    for name in PLAIN:
        runs = []
        r = build_retriever(name, _opts(cache_dir))
        for _ in range(2):
            rd = r.rank_docs(docs, 3)
            td = r.timings
            rp = r.rank_passages(passages, 3)
            runs.append((rd, td, rp, r.timings))
        out[name] = runs
    return out


@pytest.mark.parametrize("name", PLAIN)
def test_every_retriever_ranks_the_right_candidates(name, results, docs, passages):
    (rd, td, rp, tp), (rd2, _, rp2, _) = results[name]
    pages_of = docs.pages.rows_of()
    assert set(rd) == {q.question_id for q in docs.questions}
    for q in docs.questions:
        own = {docs.pages.page_id[r] for r in pages_of[q.doc_name]}
        assert len(rd[q.question_id]) == 3 and len(set(rd[q.question_id])) == 3
        assert set(rd[q.question_id]) <= own
    pool = set(passages.passages.passage_id)
    assert set(rp) == {q.question_id for q in passages.queries}
    for ranked in rp.values():
        assert len(ranked) == 3 and len(set(ranked)) == 3 and set(ranked) <= pool
    assert (rd, rp) == (rd2, rp2), "a second run ranked differently"
    for t, n, items in ((td, len(docs.questions), len(docs.pages)), (tp, len(passages.queries), 7)):
        assert len(t["encode_ms"]) == n and len(t["search_ms"]) == n
        assert t["items_indexed"] == items
        assert all(x >= 0 for x in t["encode_ms"] + t["search_ms"])
        if name != "random":
            assert t["index_bytes"] > 0


@pytest.mark.parametrize("scope", ["document", "pool"])
def test_fewer_pages_than_k_returns_all_of_them(docs, cache_dir, scope):
    ranked = build_retriever("bm25", _opts(cache_dir, bm25_scope=scope)).rank_docs(docs, 10)
    assert sorted(ranked["10001"]) == ["0", "1", "2"]
    assert sorted(ranked["10000"]) == ["0", "1", "2", "3"]
    assert ranked["10000"][0] == "2" and ranked["10001"][0] == "1"


def test_bm25_finds_the_exact_text_page_in_the_chosen_field(results, docs, cache_dir):
    vlm = results["bm25"][0][0]
    ocr = results["bm25_ocr"][0][0]
    assert vlm["10000"][0] == "2"  # VLM text of page 2, word for word
    assert vlm["10001"][0] == "1"
    assert vlm["10002"][0] == "2"  # the words sit in page 2's VLM text ...
    assert ocr["10002"][0] == "1"  # ... and in page 1's OCR text
    both = build_retriever("bm25", _opts(cache_dir, doc_text="both")).rank_docs(docs, 4)
    assert set(both["10002"][:2]) == {"1", "2"}


def test_dense_ranks_the_paraphrased_page_first(results):
    assert results["dense"][0][0]["10003"][0] == "2"  # "pump pressure error" ~ troubleshooting page
    assert results["dense"][0][1]["fallback"] is None


@pytest.mark.parametrize("name", ["match", "hybrid"])
def test_matching_finds_the_screenshot_holding_the_photo(name, results):
    rp = results[name][0][2]
    for j in range(N_PHOTOS):
        assert rp[str(j)][0] == f"WIT_{j}", (name, j, rp[str(j)])


def test_image_features_rank_the_screenshot_holding_the_photo_high(passages, cache_dir):
    # generic ImageNet features tell the low-texture photo 5 (a disc on a flat ground) less well
    # apart than instance matching does: top 1 for the others, a high mean reciprocal rank overall
    rp = build_retriever("image", _opts(cache_dir)).rank_passages(passages, 7)
    ranks = [rp[str(j)].index(f"WIT_{j}") for j in range(N_PHOTOS)]
    assert sum(r == 0 for r in ranks) >= N_PHOTOS - 1, ranks
    assert np.mean([1 / (r + 1) for r in ranks]) >= 0.8, ranks


def test_match_verifies_with_inliers_and_image_falls_back_on_mmdocir(results, passages, cache_dir):
    t = results["match"][0][3]
    assert t["queries_verified"] == N_PHOTOS
    assert "dense text" in results["image"][0][1]["fallback"]
    # the passage without a screenshot ranks last for an image-only retriever
    r = build_retriever("image", _opts(cache_dir))
    assert r.rank_passages(passages, 7)["0"][-1] == "WIT_none"


def test_second_run_reads_vectors_from_the_cache(results, docs, passages):
    # the results fixture ran each retriever twice with one cache dir
    _, t_first, _, tp_first = results["dense"][0]
    _, t_again, _, tp_again = results["dense"][1]
    assert t_again["from_cache"] == len(docs.pages) + len(docs.questions)
    assert tp_again["from_cache"] == len(passages.passages) + len(passages.queries)
    assert results["image"][1][3]["from_cache"] >= results["image"][1][3]["windows"] + N_PHOTOS


def test_rrf_on_hand_made_rankings():
    a, b = ["x", "y", "z"], ["y", "z", "x"]
    assert rrf({"a": a, "b": b}, {"a": 1, "b": 1}, 60) == ["y", "x", "z"]
    assert rrf({"a": a, "b": b}, {"a": 3, "b": 1}, 60) == ["x", "y", "z"]
    assert rrf({"a": a, "b": b}, {"a": 0, "b": 1}, 60) == ["y", "z", "x"]
    # an id only one component ranks still gets its share; equal scores keep first-seen order
    assert rrf({"a": ["p"], "b": ["q"]}, {"a": 1, "b": 1}, 60) == ["p", "q"]
    assert rrf({"a": ["p", "q"], "b": ["r"]}, {"a": 1, "b": 2}, 1) == ["r", "p", "q"]


def test_hybrid_uses_no_text_for_image_only_queries(passages, cache_dir):
    # text weight on image-only kinds would be noise; the default weights give it none
    h = build_retriever("hybrid", _opts(cache_dir))
    assert h.weights["image"].get("bm25", 0) == 0 and h.weights["wit"].get("dense", 0) == 0
    assert h.weights["image_question"]["bm25"] > 0
    with pytest.raises(ConfigError, match="unknown retriever 'clip'"):
        build_retriever("hybrid", _opts(cache_dir, weights={"image": {"clip": 1.0}}))


@pytest.mark.parametrize("name", ["image", "match", "hybrid"])
def test_missing_query_image_is_a_named_data_error(name, passages, cache_dir, tmp_path):
    missing = tmp_path / "gone.jpg"
    queries = [dataclasses.replace(q) for q in passages.queries]
    queries[3] = dataclasses.replace(queries[3], image_path=missing)
    ps = dataclasses.replace(passages, queries=queries)
    with pytest.raises(DataError, match="gone.jpg.*img_path.*query 3"):
        build_retriever(name, _opts(cache_dir)).rank_passages(ps, 3)


def test_missing_or_broken_screenshot_is_a_named_data_error(passages, cache_dir, tmp_path):
    shots = list(passages.passages.screenshot)
    shots[2] = tmp_path / "nothere.png"
    ps = dataclasses.replace(passages, passages=dataclasses.replace(passages.passages, screenshot=shots))
    with pytest.raises(DataError, match="nothere.png.*page_screenshot.*WIT_5"):
        build_retriever("image", _opts(cache_dir)).rank_passages(ps, 3)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    shots[2] = tmp_path / "broken.png"
    with pytest.raises(DataError, match="broken.png.*not a decodable image"):
        build_retriever("match", _opts(cache_dir)).rank_passages(ps, 3)


def test_a_pool_without_screenshots_still_gets_a_ranking(passages, cache_dir):
    bare = dataclasses.replace(passages.passages, screenshot=[None] * len(passages.passages))
    r = build_retriever("image", _opts(cache_dir))
    ranked = r.rank_passages(dataclasses.replace(passages, passages=bare), 3)
    assert all(v == ["WIT_3", "WIT_0", "WIT_5"] for v in ranked.values())  # the pool order
    assert "no passage has a screenshot" in r.timings["fallback"]


def test_question_of_an_unknown_document_is_a_named_data_error(docs):
    bad = dataclasses.replace(docs, questions=[*docs.questions, DocQuestion("10009", "q", "no_such_doc")])
    with pytest.raises(DataError, match="question 10009.*no_such_doc"):
        build_retriever("bm25").rank_docs(bad, 3)


def test_options_and_registry_errors_name_the_key():
    with pytest.raises(ConfigError, match="doc_txt"):
        RetrieverOptions.from_dict({"doc_txt": "ocr"})
    with pytest.raises(ConfigError, match="doc_text"):
        RetrieverOptions(doc_text="pdf")
    with pytest.raises(ConfigError, match="nope.*available: bm25"):
        build_retriever("nope")


def test_random_is_seeded_per_question(docs, passages):
    a = build_retriever("random", RetrieverOptions(seed=1)).rank_passages(passages, 5)
    b = build_retriever("random", RetrieverOptions(seed=1)).rank_passages(
        dataclasses.replace(passages, queries=passages.queries[::-1]), 5
    )
    c = build_retriever("random", RetrieverOptions(seed=2)).rank_passages(passages, 5)
    assert a == b and a != c


def test_windows_cover_a_tall_page_with_squares():
    boxes = windows(300, 900, (1, 3))
    assert boxes[0] == (0, 0, 300, 900)
    squares = boxes[1:]
    assert all(r - left == b - t for left, t, r, b in squares)
    assert max(b for *_, b in squares) == 900 and max(r for _, _, r, _ in squares) == 300
    assert len([s for s in squares if s[2] - s[0] == 100]) == 3 * 9


# ----------------------------------------------------------------------------------------------
# on the generator's output


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    from mmctr.retrieval.data import load, load_truth
    from mmctr.retrieval.data.synth import generate

    root = tmp_path_factory.mktemp("t1") / "data"
    generate(root, scale="tiny", seed=0, progress=False)
    return load(root), load_truth(root)


def _score(name: str, generated, cache_dir: Path) -> dict:
    from mmctr.retrieval.metrics import evaluate

    data, truth = generated
    r = build_retriever(name, _opts(cache_dir, match_candidates=50))
    return evaluate(r.rank_docs(data.docs, 10), r.rank_passages(data.passages, 10), truth, "final")


def test_bm25_beats_random_on_generated_data(generated, cache_dir):
    bm25, rnd = _score("bm25", generated, cache_dir), _score("random", generated, cache_dir)
    assert bm25["mmdocir"]["score"] > rnd["mmdocir"]["score"] + 0.3
    assert bm25["m2kr"]["by_kind"]["image_question"]["score"] > rnd["m2kr"]["score"] + 0.3


@pytest.mark.slow
def test_every_retriever_on_generated_data(generated, cache_dir):
    s = {name: _score(name, generated, cache_dir) for name in PLAIN}
    for name in PLAIN:
        assert s[name]["overall"]["score"] >= s["random"]["overall"]["score"], name
    # the image retrievers carry M2KR, matching improves on window features, fusion on both
    assert s["image"]["m2kr"]["score"] > s["bm25"]["m2kr"]["score"] + 0.2
    assert s["match"]["m2kr"]["score"] >= s["image"]["m2kr"]["score"]
    assert s["hybrid"]["overall"]["score"] >= max(s[n]["overall"]["score"] for n in PLAIN if n != "hybrid")
