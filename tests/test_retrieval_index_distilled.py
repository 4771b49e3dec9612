"""The persistent index of a distilled run (`mmctr retrieval index --run SRUN`): it ranks as the
`distilled` retriever does, survives save -> load -> update, refuses a run that changed or moved,
and answers /v1/search (text; an image-only query is a 422 naming `image`).

The run is a student with random weights saved the way `mmctr retrieval distill` saves one: its two
towers differ from each other and from mean pooling, so an index that used the wrong tower, the
wrong token vectors or the wrong page text ranks differently from the retriever. It records
`doc_text="ocr"`, so the index must take the run's page text, not the CLI's own default (vlm)."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("faiss")

from mmctr.cli import main  # noqa: E402
from mmctr.errors import ConfigError, DataError  # noqa: E402
from mmctr.retrieval.index.sources import Record, from_data_root  # noqa: E402
from mmctr.retrieval.index.store import DocumentIndex  # noqa: E402
from mmctr.retrieval.index.towers import DistilledTowers, load_towers  # noqa: E402
from mmctr.retrieval.retrievers import RetrieverOptions, build_retriever  # noqa: E402
from mmctr.retrieval.retrievers.base import query_text  # noqa: E402
from mmctr.retrieval.trained import distill as D  # noqa: E402

TEXTS = [
    "The harbour bridge opened in 1932 after eight years of work.",
    "Quarterly revenue of the bakery grew by twelve percent in spring.",
    "Glaciers in the northern valley retreated four hundred metres.",
    "The orchestra rehearsed the symphony twice before the premiere.",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """MiniLM one query at a time runs many times slower on threads that share busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmctr.retrieval.data.synth import generate

    root = tmp_path_factory.mktemp("t1idxdist") / "data"
    generate(root, scale="tiny", seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("t1idxdist_cache")


@pytest.fixture(scope="module")
def srun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = D.SingleVectorStudent(D.StudentConfig(rank=8))
    with torch.no_grad():
        for pool in (model.query_pool, model.doc_pool):
            pool.score.normal_(std=2.0)  # sharp attention: far from the mean token
        for proj in (model.query_proj, model.doc_proj):
            proj.up.weight.normal_(std=1.0)
    options = dataclasses.replace(RetrieverOptions(), doc_text="ocr")
    out = tmp_path_factory.mktemp("t1idxdist_run") / "srun"
    D.save_run(out, model, {"teacher": "late", "retriever_options": D.token_options(options)}, {})
    return out


@pytest.fixture(scope="module")
def built(tiny: Path, srun: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    idx = tmp_path_factory.mktemp("t1idxdist_idx") / "idx"
    argv = ["retrieval", "index", "--data", str(tiny), "--run", str(srun), "--out", str(idx)]
    assert main([*argv, "--cache-dir", str(cache), "--no-progress"]) == 0
    return idx


def _records(names: list[str]) -> list[Record]:
    return [
        Record(n, n.split("#")[0], 1, n, f"{TEXTS[i % len(TEXTS)]} ({n})", lambda: None)
        for i, n in enumerate(names)
    ]


def _hits(index: DocumentIndex, query: str, k: int = 5) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 5)) for h in index.search(query, k=k)]


def test_run_kind_picks_the_adapter(srun: Path) -> None:
    towers = load_towers(srun)
    assert isinstance(towers, DistilledTowers) and towers.recorded["doc_text"] == "ocr"


def test_index_ranks_as_the_distilled_retriever(built: Path, tiny: Path, srun: Path, cache: Path) -> None:
    from mmctr.retrieval.data import load

    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["format"] == 3 and manifest["run"]["kind"] == D.KIND
    assert manifest["run"]["path"] == str(srun.resolve()) and len(manifest["run"]["sha256"]) == 64
    assert manifest["text_dim"] == 384 and manifest["image_dim"] is None and manifest["windows"] == 0
    index = DocumentIndex.load(built, cache_dir=cache)
    data = load(tiny)
    retriever = build_retriever("distilled", RetrieverOptions(cache_dir=cache, device="cpu", run=srun))

    docs = data.docs
    ranked = retriever.rank_docs(docs, 3)
    every = len(index.items)
    for q in docs.questions:
        own = [h.id for h in index.search(q.question, k=every) if h.doc == q.doc_name]
        assert own[:3] == [f"{q.doc_name}#{p}" for p in ranked[q.question_id]], q.question_id

    ps = data.passages
    with_text = [q for q in ps.queries if q.question]  # no image fallback
    with_text = dataclasses.replace(ps, queries=with_text)
    ranked = retriever.rank_passages(with_text, 5)
    passages = set(ps.passages.passage_id)
    for q in with_text.queries:
        text = query_text(q, retriever.options.query_instruction)
        found = [h.id for h in index.search(text, k=every) if h.id in passages]
        assert found[:5] == ranked[q.question_id], q.question_id


def test_save_load_and_update_equal_a_fresh_build(
    tiny: Path, srun: Path, cache: Path, tmp_path: Path
) -> None:
    records = list(from_data_root(tiny, "ocr"))
    index = DocumentIndex(cache_dir=cache, run=srun)
    assert not index.images  # the student has no image tower
    index.add(records[:12])
    index.save(tmp_path / "idx")
    loaded = DocumentIndex.load(tmp_path / "idx", cache_dir=cache)
    assert isinstance(loaded.towers, DistilledTowers) and loaded.options.doc_text == "ocr"
    for query in TEXTS:
        assert _hits(loaded, query) == _hits(index, query)

    extra = _records([f"new{i}#1" for i in range(6)])
    gone = {records[0].doc, "new2"}
    loaded.add(records[12:] + extra)
    assert loaded.delete(sorted(gone)) > 1
    loaded.save(tmp_path / "idx", overwrite=True)
    again = DocumentIndex.load(tmp_path / "idx", cache_dir=cache)
    fresh = DocumentIndex(cache_dir=cache, run=srun)
    fresh.add([r for r in records + extra if r.doc not in gone])
    for query in [*TEXTS, records[5].text[:200]]:
        hits = _hits(again, query, k=8)
        assert hits == _hits(fresh, query, k=8) and not {i.split("#")[0] for i, _ in hits} & gone
    assert again.search(TEXTS[1], image=b"\x89PNG", k=3)[0].matched == "text"  # text answers
    with pytest.raises(ConfigError, match="image: this index holds a distilled run"):
        again.search(image=b"\x89PNG", k=3)


def test_a_changed_or_moved_run_is_refused(
    built: Path, srun: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from safetensors.torch import load_file, save_file

    run = tmp_path / "srun"  # a copy: this test changes and then moves it
    shutil.copytree(srun, run)
    idx = tmp_path / "idx"
    index = DocumentIndex(cache_dir=cache, run=run)
    index.add(_records(["a#1", "b#1"]))
    index.save(idx)
    search = ["retrieval", "search", "--index", str(idx), "--query", "bridge", "--cache-dir", str(cache)]
    assert main(search) == 0
    assert f"towers of run {run.resolve()}" in capsys.readouterr().out
    update = ["retrieval", "index", "--index", str(idx), "--delete", "a", "--cache-dir", str(cache)]
    assert main([*update, "--run", str(run)]) == 2  # the index keeps the run it was built with
    assert "--run is for a new index" in capsys.readouterr().err

    state = load_file(str(run / "model.safetensors"))
    state["logit_scale"] = state["logit_scale"] + 1.0  # distilled again, say
    save_file(state, str(run / "model.safetensors"))
    with pytest.raises(DataError, match="changed since the index"):
        DocumentIndex.load(idx, cache_dir=cache)
    assert main(search) == 2
    assert "changed since the index" in capsys.readouterr().err
    run.rename(tmp_path / "moved")
    with pytest.raises(DataError, match="not found: the index"):
        DocumentIndex.load(idx, cache_dir=cache)
    assert main(update) == 2
    assert str(run.resolve() / "model.safetensors") in capsys.readouterr().err


def test_v1_search_answers_text_and_names_the_image_field(built: Path, cache: Path) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from helpers_retrieval import page_png
    from mmctr.serve.app import ServeSettings, create_app

    index = DocumentIndex.load(built, cache_dir=cache)
    query = index.items[3]["text"][:200]
    app = create_app(ranker=None, settings=ServeSettings(), index=index)  # /v1/search needs no ranker
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            resp = c.post("/v1/search", json={"query": query, "k": 4})
            image = base64.b64encode(page_png("photo")).decode()
            refused = c.post("/v1/search", json={"image": image, "k": 4})
    finally:
        app.state.service.close()
    assert resp.status_code == 200
    assert [(h["id"], h["matched"]) for h in resp.json()["hits"]] == [
        (h.id, "text") for h in index.search(query, k=4)
    ]
    assert refused.status_code == 422 and refused.json()["field"] == "image"
    assert "distilled run" in refused.json()["error"] and "text query" in refused.json()["error"]
