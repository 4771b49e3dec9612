"""The persistent index: FAISS kinds, the round trip (build, add, delete, reload == a fresh build),
one's own PDFs indexed offline (rendered, OCR'd, searched), and an index of a trained run's tower
vectors (`--run`): the same round trip, and a run that changed or went missing refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from mmctr.retrieval.index.sources import Record, from_pdfs  # noqa: E402
from mmctr.retrieval.index.store import DocumentIndex  # noqa: E402
from mmctr.retrieval.index.vectors import KINDS, VectorStore  # noqa: E402

SENTENCES = [
    "The harbour bridge opened in 1932 after eight years of work.",
    "Quarterly revenue of the bakery grew by twelve percent in spring.",
    "Glaciers in the northern valley retreated four hundred metres.",
    "The orchestra rehearsed the symphony twice before the premiere.",
    "Copper wiring was replaced with fibre across the old campus.",
    "Migrating geese rested on the lake for three days in October.",
]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_finds_a_vector_and_skips_tombstones(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store = VectorStore(kind, 64)
    store.add(x[:200])
    store.add(x[200:])  # a second add: no retraining
    s, r = store.search(x[[5, 250]], 3)
    assert list(r[:, 0]) == [5, 250], kind  # each vector is its own nearest neighbour
    store.delete(np.array([5]))
    s, r = store.search(x[[5]], 3)
    assert 5 not in r[0] and (r[0] >= 0).all()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data root, run, cache): a one-epoch run on the generator's tiny data. Crop grids (1,), not
    the index's own (1, 2): few windows to encode, and an index must follow the run's grids."""
    from mmctr.retrieval.data.synth import generate
    from mmctr.retrieval.retrievers import RetrieverOptions
    from mmctr.retrieval.trained.train import TrainConfig, train_run

    base = tmp_path_factory.mktemp("t1indexrun")
    root, run, cache = base / "data", base / "run", base / "cache"
    generate(root, scale="tiny", seed=0, progress=False)
    options = RetrieverOptions(cache_dir=cache, crop_grids=(1,))
    train_run([root], run, options, TrainConfig(epochs=1), progress=False, log=lambda m: None)
    return root, run, cache


def _records(names: list[str]) -> list[Record]:
    from helpers_retrieval import page_png

    return [
        Record(n, n.split("#")[0], 1, n, SENTENCES[i % len(SENTENCES)] + f" ({n})", lambda n=n: page_png(n))
        for i, n in enumerate(names)
    ]


@pytest.mark.parametrize("with_run", [False, True], ids=["plain", "run"])
def test_round_trip_equals_a_fresh_build(
    tmp_path: Path, with_run: bool, request: pytest.FixtureRequest
) -> None:
    run = request.getfixturevalue("tiny_run")[1] if with_run else None
    base = [f"doc{i}#1" for i in range(6)]
    extra = [f"new{i}#1" for i in range(10)]
    gone = ["doc1", "doc3", "new2", "new5", "new7"]
    index = DocumentIndex(cache_dir=tmp_path / "cache", run=run)
    index.add(_records(base))
    index.save(tmp_path / "idx")
    loaded = DocumentIndex.load(tmp_path / "idx", cache_dir=tmp_path / "cache")
    assert (loaded.towers is not None) == with_run  # the manifest's run, loaded without being named
    q = SENTENCES[2]
    assert [h.id for h in loaded.search(q, k=3)] == [h.id for h in index.search(q, k=3)]
    loaded.add(_records(extra))
    assert loaded.delete(gone) == 5
    loaded.save(tmp_path / "idx", overwrite=True)
    again = DocumentIndex.load(tmp_path / "idx", cache_dir=tmp_path / "cache")
    keep = [n for n in base + extra if n.split("#")[0] not in gone]
    fresh = DocumentIndex(cache_dir=tmp_path / "cache", run=run)
    if with_run:  # adding kept the first build's centre; a fresh build given it stores the same vectors
        np.testing.assert_array_equal(again.center, index.center)
        fresh.center = again.center
    fresh.add([r for r in _records(base + extra) if r.id in keep])
    photos = {n: r.image() for n, r in zip(keep, _records(keep), strict=True)}
    for query, photo in zip(SENTENCES, list(photos.values()), strict=False):
        for kw in ({"query": query}, {"image": photo}, {"query": query, "image": photo}):
            a = [(h.id, round(h.score, 4), h.matched) for h in again.search(**kw, k=5)]
            b = [(h.id, round(h.score, 4), h.matched) for h in fresh.search(**kw, k=5)]
            assert a == b, (query, list(kw))
            assert not {i for i, _, _ in a} & {f"{g}#1" for g in gone}
    assert again.search(image=photos["new4#1"], k=1)[0].id == "new4#1"


def test_own_pdfs_are_rendered_ocrd_and_found(tmp_path: Path) -> None:
    pytest.importorskip("pypdfium2")
    pytest.importorskip("rapidocr")
    from PIL import Image, ImageDraw, ImageFont

    folder = tmp_path / "pdfs"
    folder.mkdir()
    font = ImageFont.load_default(size=26)
    for d in range(2):  # two scanned PDFs (no text layer: OCR must read them), three pages each
        pages = []
        for p in range(3):
            img = Image.new("RGB", (900, 420), "white")
            draw = ImageDraw.Draw(img)
            draw.text((30, 60), SENTENCES[d * 3 + p], fill="black", font=font)
            draw.rectangle((30, 200, 200, 380), outline="black", width=3)
            pages.append(img)
        pages[0].save(folder / f"report{d}.pdf", save_all=True, append_images=pages[1:])
    records = list(from_pdfs(folder))
    assert [r.id for r in records] == [f"report{d}.pdf#{p}" for d in range(2) for p in (1, 2, 3)]
    assert "glaciers" in records[2].text.lower()  # OCR read the scanned page
    index = DocumentIndex(cache_dir=tmp_path / "cache")
    index.add(records)
    index.save(tmp_path / "idx")
    hits = DocumentIndex.load(tmp_path / "idx", cache_dir=tmp_path / "cache").search(
        "geese resting on the lake in October", k=3
    )
    assert hits[0].id == "report1.pdf#3" and hits[0].source.endswith("report1.pdf, page 3")


def test_cli_index_search_add_delete(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from mmctr.cli import main
    from mmctr.retrieval.data.synth import generate

    data = tmp_path / "data"
    generate(data, scale="tiny", seed=0, progress=False)
    idx = tmp_path / "idx"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    build = ["retrieval", "index", "--data", str(data), "--out", str(idx), "--text-only", *cache]
    assert main(build) == 0
    assert main(build) == 2  # exists: refused
    capsys.readouterr()
    items = [json.loads(line) for line in (idx / "items.jsonl").read_text().splitlines()]
    page = next(it for it in items if "#" in it["id"])
    assert (
        main(["retrieval", "search", "--index", str(idx), "--query", page["text"][:300], "--json", *cache])
        == 0
    )
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["id"] == page["id"]
    assert main(["retrieval", "index", "--index", str(idx), "--delete", page["doc"], *cache]) == 0
    capsys.readouterr()
    assert (
        main(["retrieval", "search", "--index", str(idx), "--query", page["text"][:300], "--json", *cache])
        == 0
    )
    assert all(h["doc"] != page["doc"] for h in json.loads(capsys.readouterr().out))


def test_cli_index_with_a_run_searches_with_its_towers_and_refuses_a_changed_run(
    tmp_path: Path, tiny_run: tuple[Path, Path, Path], capsys: pytest.CaptureFixture
) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from mmctr.cli import main

    data, trained, cache_dir = tiny_run
    run = tmp_path / "run"  # a copy: this test changes and then removes it
    shutil.copytree(trained, run)
    idx = tmp_path / "idx"
    cache = ["--cache-dir", str(cache_dir)]
    build = ["retrieval", "index", "--data", str(data), "--run", str(run), "--out", str(idx), *cache]
    assert main([*build, "--no-progress"]) == 0
    manifest = json.loads((idx / "manifest.json").read_text())
    assert manifest["run"]["path"] == str(run.resolve()) and len(manifest["run"]["sha256"]) == 64
    assert manifest["window_grids"] == [1]  # the run's crop grids, not the index's own
    assert (idx / "center.npy").is_file()
    capsys.readouterr()
    items = [json.loads(line) for line in (idx / "items.jsonl").read_text().splitlines()]
    page = next(it for it in items if "#" in it["id"])
    search = ["retrieval", "search", "--index", str(idx), "--json", *cache]
    assert main([*search, "--query", page["text"][:300]]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["id"] == page["id"]
    update = ["retrieval", "index", "--index", str(idx), "--delete", page["doc"], *cache]
    assert main([*update, "--run", str(run)]) == 2  # the index keeps the run it was built with
    assert "--run is for a new index" in capsys.readouterr().err
    assert main(update) == 0
    capsys.readouterr()
    assert main([*search, "--query", page["text"][:300]]) == 0
    assert all(h["doc"] != page["doc"] for h in json.loads(capsys.readouterr().out))

    state = load_file(str(run / "model.safetensors"))
    state["logit_scale"] = state["logit_scale"] + torch.tensor(1.0)  # retrained, say
    save_file(state, str(run / "model.safetensors"))
    assert main([*search, "--query", "bridge"]) == 2
    err = capsys.readouterr().err
    assert str(run.resolve() / "model.safetensors") in err and "changed since the index" in err
    shutil.rmtree(run)
    assert main([*search, "--query", "bridge"]) == 2
    err = capsys.readouterr().err
    assert str(run.resolve() / "model.safetensors") in err and "not found" in err
