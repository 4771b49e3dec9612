"""The late-interaction retriever: MaxSim against a brute-force reference, token pooling (cluster
count, unit norm, identity at factor 1, means of real clusters; the pool-wide budget of global
pooling, which merges repeats before distinct tokens), chunking of long texts, and on the
generator's tiny data: rankings are permutations of the right candidates, timings are filled, the
cache makes a second run read only, and image-only M2KR queries take the image ranking, stated."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from mmctr.errors import ConfigError
from mmctr.retrieval.data.types import DocPages, DocSet, Passages, PassageSet
from mmctr.retrieval.retrievers import RETRIEVERS, RetrieverOptions, build_retriever
from mmctr.retrieval.retrievers.image import ImageRetriever
from mmctr.retrieval.retrievers.late import (
    CHUNK_OVERLAP,
    LateInteractionRetriever,
    MultiVectors,
    maxsim,
    pool_global,
    pool_tokens,
)

SHOTS_KEPT = 2  # screenshots left in the M2KR pool: enough for a real image ranking, cheap to encode
QUESTIONS = 9  # questions kept per task
DOCUMENTS = 2  # MMDocIR documents kept


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    m = rng.standard_normal((n, d)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# plain arrays


def test_maxsim_equals_a_brute_force_reference():
    rng = np.random.default_rng(0)
    mats = [_unit(rng, n, 8) for n in (3, 1, 0, 5, 2)]  # candidate 2 has no vectors
    store = MultiVectors.stack(mats, 8)
    assert store.vectors.dtype == np.float16 and list(store.offsets) == [0, 3, 4, 4, 9, 11]
    q = _unit(rng, 4, 8)
    ref = []
    for i in range(len(mats)):
        c = store.of(i).astype(np.float32)  # the float16 values the store holds
        if len(c) == 0:
            ref.append(-np.inf)
            continue
        ref.append(sum(max(float(t @ v) for v in c) for t in q))
    np.testing.assert_allclose(store.scores(q), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(store.scores(q, 3, 5), ref[3:5], rtol=1e-5, atol=1e-5)  # one block
    # a hand-made case: the exact values
    cands = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    query = np.array([[1, 0], [0, 1]], dtype=np.float32)
    got = maxsim(query, cands, np.array([0, 2, 3]))
    np.testing.assert_allclose(got, [2.0, 1.4], atol=1e-6)  # 1 + 1; 0.6 + 0.8


def test_pooling_factor_one_is_identity_and_factor_three_keeps_a_third():
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5, 10, 31, 100):
        v = _unit(rng, n, 16).astype(np.float16)
        np.testing.assert_array_equal(pool_tokens(v, 1), v.astype(np.float32))
        for f in (2, 3, 4):
            p = pool_tokens(v, f)
            assert 1 <= len(p) <= math.ceil(n / f) and len(p) <= max(1, n // f), (n, f, len(p))
            np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="pool_factor"):
        pool_tokens(_unit(rng, 4, 4), 0)


def test_pooling_replaces_each_cluster_by_its_normalised_mean():
    rng = np.random.default_rng(2)
    centres = _unit(rng, 3, 32)
    members = [c + 0.05 * rng.standard_normal((10, 32)).astype(np.float32) for c in centres]
    v = np.concatenate(members)[rng.permutation(30)]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    p = pool_tokens(v, 10)  # 30 // 10 = 3 clusters, one per centre
    assert p.shape == (3, 32)
    for c, m in zip(centres, members, strict=True):
        mean = (m / np.linalg.norm(m, axis=1, keepdims=True)).mean(axis=0)
        mean /= np.linalg.norm(mean)
        assert np.max(p @ mean) > 0.9999, "a pooled vector is not the mean of one true cluster"
        assert np.max(p @ c) > 0.99


def test_global_pooling_holds_the_pool_budget():
    sizes = (0, 1, 2, 3, 7, 40, 120)
    rng = np.random.default_rng(3)
    mats = [_unit(rng, n, 16).astype(np.float16) for n in sizes]
    total = sum(len(m) for m in mats)
    for f in (1.5, 2, 2.5, 3, 7):
        pooled = pool_global(mats, f)
        assert sum(len(p) for p in pooled) <= total // f, f
        for m, p in zip(mats, pooled, strict=True):
            assert (len(p) == 0) == (len(m) == 0) and len(p) <= len(m)  # a candidate keeps a vector
            if len(p):
                np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    same = pool_global(mats, 1)
    assert all(np.array_equal(a, m.astype(np.float32)) for a, m in zip(same, mats, strict=True))
    # deterministic, and a candidate's vectors do not depend on where it sits in the pool
    again, backwards = pool_global(mats, 2.5), pool_global(mats[::-1], 2.5)[::-1]
    for a, b, c in zip(pool_global(mats, 2.5), again, backwards, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    with pytest.raises(ConfigError, match="pool_factor"):
        pool_global(mats, 0.5)


def test_global_pooling_merges_repeats_before_distinct_tokens():
    """A page of one word repeated and a page of ten distinct words, half the pool's vectors to
    keep: the global cut spends the merges on the repeats and keeps the distinct words, where
    per-candidate pooling halves both pages."""
    rng = np.random.default_rng(4)
    word = _unit(rng, 1, 32)
    repeats = word + 0.01 * rng.standard_normal((10, 32)).astype(np.float32)
    repeats /= np.linalg.norm(repeats, axis=1, keepdims=True)
    distinct = np.eye(32, dtype=np.float32)[:10]  # ten orthogonal tokens
    a, b = pool_global([repeats, distinct], 2)  # 20 vectors -> at most 10
    assert len(a) + len(b) <= 10
    assert len(a) == 1 and np.max(a @ word.T) > 0.999  # the repeats became their mean
    assert len(b) == 9
    kept = [any(np.array_equal(row, d) for row in b) for d in distinct]
    assert sum(kept) == 8, "distinct tokens should survive unchanged, one pair merged at most"
    # MaxSim of the distinct page's own words: global keeps far more of it than per-candidate
    full = MultiVectors.stack([repeats, distinct], 32)
    glob = MultiVectors.stack([a, b], 32)
    alone = MultiVectors.stack([pool_tokens(repeats, 2), pool_tokens(distinct, 2)], 32)
    q = distinct
    assert full.scores(q)[1] == pytest.approx(10, abs=1e-2)
    assert glob.scores(q)[1] > 9.3 > 8.0 > alone.scores(q)[1]


def test_pool_factor_and_encoder_errors_name_the_option(tmp_path):
    with pytest.raises(ConfigError, match="pool_factor"):
        LateInteractionRetriever(RetrieverOptions(), pool_factor=0)
    with pytest.raises(ConfigError, match="pool_factor"):
        LateInteractionRetriever(RetrieverOptions(), pool_factor="three")
    with pytest.raises(ConfigError, match="pooling='kmeans'; expected one of ward, global"):
        LateInteractionRetriever(RetrieverOptions(), pool_factor=2, pooling="kmeans")
    assert LateInteractionRetriever(RetrieverOptions(), pool_factor=2.5).pool_factor == 2.5
    r = LateInteractionRetriever(RetrieverOptions(text_encoder="clip", cache_dir=tmp_path, device="cpu"))
    with pytest.raises(ConfigError, match="text_encoder"):
        _ = r.encoder


# ----------------------------------------------------------------------------------------------
# on the generator's tiny data


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    from mmctr.retrieval.data import load, load_truth
    from mmctr.retrieval.data.synth import generate

    root = tmp_path_factory.mktemp("t1") / "data"
    generate(root, scale="tiny", seed=0, progress=False)
    data = load(root)
    # a few questions and documents: MiniLM runs on a shared CPU, and every query is encoded alone
    pages = data.docs.pages
    keep = sorted(pages.rows_of().items(), key=lambda kv: len(kv[1]))[:DOCUMENTS]  # the shortest
    rows = [r for _, doc_rows in keep for r in doc_rows]
    small = DocPages(
        [pages.doc_name[r] for r in rows],
        [pages.page_id[r] for r in rows],
        [pages.ocr_text[r] for r in rows],
        [pages.vlm_text[r] for r in rows],
        image=lambda i: None,
    )
    names = {doc for doc, _ in keep}
    questions = [q for q in data.docs.questions if q.doc_name in names][:QUESTIONS]
    docs = DocSet(questions, small, source="tiny")
    image_only = [q for q in data.passages.queries if not q.question][: QUESTIONS // 3]
    with_text = [q for q in data.passages.queries if q.question][: QUESTIONS - QUESTIONS // 3]
    p = data.passages.passages
    shots = [s if i < SHOTS_KEPT else None for i, s in enumerate(p.screenshot)]
    passages = PassageSet(image_only + with_text, Passages(p.passage_id, p.text, shots), source="tiny")
    truth = load_truth(root)
    truth.mmdocir = {q.question_id: truth.mmdocir[q.question_id] for q in docs.questions}
    truth.m2kr = {q.question_id: truth.m2kr[q.question_id] for q in passages.queries}
    return docs, passages, truth


@pytest.fixture(scope="module")
def opts(tmp_path_factory: pytest.TempPathFactory) -> RetrieverOptions:
    return RetrieverOptions(cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")


@pytest.fixture(scope="module")
def runs(generated, opts) -> dict[int, list[tuple]]:
    """late with pool factors 1 and 3, each run twice (the second run reads the cache); k is the
    whole pool, so every ranking must be a permutation of its candidates."""
    docs, passages, _ = generated
    out: dict[int, list[tuple]] = {}
    for f in (1, 3):
        r = LateInteractionRetriever(opts, pool_factor=f)
        out[f] = []
        for _ in range(2):
            rd = r.rank_docs(docs, len(docs.pages))
            td = r.timings
            rp = r.rank_passages(passages, len(passages.passages))
            out[f].append((rd, td, rp, r.timings))
    return out


@pytest.mark.parametrize("factor", [1, 3])
def test_rankings_are_permutations_of_the_right_candidates(factor, runs, generated):
    docs, passages, _ = generated
    (rd, _, rp, _), (rd2, _, rp2, _) = runs[factor]
    pages_of = docs.pages.rows_of()
    assert set(rd) == {q.question_id for q in docs.questions}
    for q in docs.questions:
        own = [docs.pages.page_id[r] for r in pages_of[q.doc_name]]
        assert sorted(rd[q.question_id]) == sorted(own)
    pool = sorted(passages.passages.passage_id)
    assert set(rp) == {q.question_id for q in passages.queries}
    assert all(sorted(ranked) == pool for ranked in rp.values())
    assert (rd, rp) == (rd2, rp2), "a second run (from the cache) ranked differently"


def test_late_ranks_pages_well_and_pooling_costs_little(runs, generated):
    from mmctr.retrieval.metrics import evaluate

    docs, _, truth = generated

    def r_at_1(ranked):
        return evaluate(ranked, None, truth, "final")["mmdocir"]["R@1"]

    score = {f: r_at_1(runs[f][0][0]) for f in (1, 3)}
    rnd = r_at_1(build_retriever("random").rank_docs(docs, 10))
    assert score[1] > rnd + 0.2, (score, rnd)
    assert score[3] > score[1] - 0.15, score


def test_timings_are_filled(runs, generated):
    docs, passages, _ = generated
    (_, td, _, tp), (_, td2, _, tp2) = runs[1]
    for t, n_q, n_items in (
        (td, len(docs.questions), len(docs.pages)),
        (tp, len(passages.queries), len(passages.passages)),
    ):
        assert t["items_indexed"] == n_items and t["index_seconds"] > 0
        assert len(t["encode_ms"]) == n_q and len(t["search_ms"]) == n_q
        assert all(x >= 0 for x in t["encode_ms"] + t["search_ms"])
        assert t["vectors"] == t["vectors_unpooled"] > n_items  # many vectors per candidate
        # float16 rows of 384 + int64 offsets
        assert t["vector_bytes"] == t["vectors"] * 384 * 2 + (n_items + 1) * 8
    assert td["load_seconds"] > 0  # the first call loads MiniLM, outside index_seconds
    assert td["index_bytes"] == td["vector_bytes"]
    assert tp["index_bytes"] > tp["vector_bytes"] and tp["windows"] > 0  # + the image windows
    # the second run reads every page, passage and query from the cache and loads nothing
    n_text_queries = sum(bool(q.question) for q in passages.queries)
    assert td2["from_cache"] == len(docs.pages) + len(docs.questions)
    assert tp2["from_cache"] >= len(passages.passages) + n_text_queries
    assert td2["load_seconds"] == 0.0 and tp2["load_seconds"] == 0.0


def test_pooled_index_keeps_at_most_a_third_of_each_candidate(generated, opts):
    docs, _, _ = generated
    texts = [t or "" for t in docs.pages.vlm_text]
    full, n_full, _ = LateInteractionRetriever(opts).index(texts)
    pooled_r = LateInteractionRetriever(opts, pool_factor=3)
    pooled, n_before, cached = pooled_r.index(texts)
    assert cached == len(texts) and pooled_r.encoder.net is None, (
        "pooling re-encoded instead of reading the cache"
    )
    assert n_before == n_full == len(full.vectors)
    for i in range(len(texts)):
        n = len(full.of(i))
        assert 1 <= len(pooled.of(i)) <= math.ceil(n / 3)
    norms = np.linalg.norm(pooled.vectors.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)  # unit vectors, to float16 precision
    assert len(pooled.vectors) <= 0.34 * len(full.vectors)
    glob_r = LateInteractionRetriever(opts, pool_factor=2.5, pooling="global")
    glob, _, _ = glob_r.index(texts)
    assert glob_r.encoder.net is None and len(glob) == len(texts)
    assert len(glob.vectors) <= 0.4 * len(full.vectors)
    assert all(len(glob.of(i)) >= 1 for i in range(len(texts)))
    again, _, _ = LateInteractionRetriever(opts, pool_factor=2.5, pooling="global").index(texts)
    assert np.array_equal(glob.vectors, again.vectors) and np.array_equal(glob.offsets, again.offsets)


def test_image_only_queries_take_the_image_ranking_stated(runs, generated, opts):
    _, passages, _ = generated
    _, _, rp, tp = runs[1][0]
    image_only = [q for q in passages.queries if not q.question]
    assert image_only and len(image_only) < len(passages.queries)
    assert tp["fallback"] == (
        f"image-only queries ({len(image_only)} of {len(passages.queries)}): "
        "the image retriever's ranking (their text is only an instruction)"
    )
    sub = dataclasses.replace(passages, queries=image_only)
    expected = ImageRetriever(opts).rank_passages(sub, len(passages.passages))
    assert {q.question_id: rp[q.question_id] for q in image_only} == expected
    # the photos are found: the passages holding a screenshot rank first, so the image side ran
    with_shot = {passages.passages.passage_id[i] for i in range(SHOTS_KEPT)}
    assert all(set(expected[q.question_id][:SHOTS_KEPT]) == with_shot for q in image_only)


def test_long_text_is_encoded_as_overlapping_chunks(opts):
    r = LateInteractionRetriever(opts)
    enc = r.encoder
    enc.ensure_loaded()
    words = "river mountain forest valley harbour castle bridge meadow village tower".split()
    text = " ".join(words[i % len(words)] for i in range(300))  # 300 single-token words
    n = len(enc.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert n == 300 and enc.window == 254  # MiniLM's 256 minus [CLS] and [SEP]
    mats = enc.items([text, "river, mountain!", "?!"]).mats
    # two chunks: 254 + (300 - 190) tokens, the 64 overlapping ones twice
    assert mats[0].shape == (n + CHUNK_OVERLAP, 384) and mats[0].dtype == np.float16
    assert mats[1].shape[0] == 2  # punctuation dropped ...
    assert mats[2].shape[0] == 2  # ... unless the text has nothing else


def test_registry_holds_late_and_pooled_variants(opts):
    assert {"late", "late_pool", "late_pool3"} <= set(RETRIEVERS)
    r = build_retriever("late_pool3", opts)
    assert isinstance(r, LateInteractionRetriever) and r.pool_factor == 3 and r.name == "late_pool3"
    assert build_retriever("late", opts).pool_factor == 1
    r = build_retriever("late_pool", opts)
    assert (r.pool_factor, r.pooling, r.name) == (2.5, "global", "late_pool")
    assert build_retriever("late_pool3", opts).pooling == "ward"


def test_cache_folder_holds_the_token_matrices(runs, opts):
    dirs = list(Path(opts.cache_dir).glob("tokens-*"))
    assert len(dirs) == 1 and (dirs[0] / "encoder.json").exists()
    assert list(dirs[0].glob("*.keys.npy")) and not list(dirs[0].glob("*.tmp"))
