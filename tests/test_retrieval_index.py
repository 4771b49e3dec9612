"""The persistent index: FAISS kinds, the round trip (build, add, delete, reload == a fresh build)
and one's own PDFs indexed offline (rendered, OCR'd, searched)."""

from __future__ import annotations

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


def _records(names: list[str]) -> list[Record]:
    from helpers_retrieval import page_png

    return [
        Record(n, n.split("#")[0], 1, n, SENTENCES[i % len(SENTENCES)] + f" ({n})", lambda n=n: page_png(n))
        for i, n in enumerate(names)
    ]


def test_round_trip_equals_a_fresh_build(tmp_path: Path) -> None:
    base = [f"doc{i}#1" for i in range(6)]
    extra = [f"new{i}#1" for i in range(10)]
    gone = ["doc1", "doc3", "new2", "new5", "new7"]
    index = DocumentIndex(cache_dir=tmp_path / "cache")
    index.add(_records(base))
    index.save(tmp_path / "idx")
    loaded = DocumentIndex.load(tmp_path / "idx", cache_dir=tmp_path / "cache")
    q = SENTENCES[2]
    assert [h.id for h in loaded.search(q, k=3)] == [h.id for h in index.search(q, k=3)]
    loaded.add(_records(extra))
    assert loaded.delete(gone) == 5
    loaded.save(tmp_path / "idx", overwrite=True)
    again = DocumentIndex.load(tmp_path / "idx", cache_dir=tmp_path / "cache")
    keep = [n for n in base + extra if n.split("#")[0] not in gone]
    fresh = DocumentIndex(cache_dir=tmp_path / "cache")
    fresh.add([r for r in _records(base + extra) if r.id in keep])
    for query in SENTENCES:
        a = [(h.id, round(h.score, 4)) for h in again.search(query, k=5)]
        b = [(h.id, round(h.score, 4)) for h in fresh.search(query, k=5)]
        assert a == b, query
        assert not {i for i, _ in a} & {f"{g}#1" for g in gone}
    photo = _records(["new4#1"])[0].image()
    assert again.search(image=photo, k=1)[0].id == "new4#1"


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
