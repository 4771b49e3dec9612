"""Track 1 data: the generator (determinism, counts, the signals that make modality matter) and the
readers of every real layout, each bad input named by file, column and row."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmctr.errors import DataError
from mmctr.outputs import OutputError
from mmctr.retrieval.data import M2KR_KINDS, load, load_train, load_truth
from mmctr.retrieval.data import formats as F
from mmctr.retrieval.data.synth import SCALES, generate

# ----------------------------------------------------------------------------------------------
# The generator


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rgen") / "data"
    generate(root, scale="tiny", seed=0, progress=False, workers=2)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _tokens(s: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", s.lower()))


def test_scales_are_the_contract() -> None:
    assert SCALES == ("tiny", "small", "full")


def test_same_seed_same_bytes_other_seed_differs(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, scale="tiny", seed=0, progress=False, workers=1)  # other worker count, same files
    other = tmp_path / "other"
    generate(other, scale="tiny", seed=1, progress=False, workers=2)
    a, b, c = _files(tiny), _files(again), _files(other)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    for name in (f"MMDocIR/{F.MMDOCIR_PAGES}", f"MMDocIR/{F.MMDOCIR_QUESTIONS}", f"M2KR/{F.M2KR_PASSAGES}"):
        assert a[name] != c[name]


def test_tiny_layout_and_counts(tiny: Path) -> None:
    pages = pq.read_table(tiny / "MMDocIR" / F.MMDOCIR_PAGES)
    assert tuple(pages.column_names) == F.PAGE_COLUMNS
    assert pages.schema.field("image_binary").type == pa.binary()
    docs = sorted(set(pages.column("doc_name").to_pylist()))
    assert len(docs) == 4 and 20 <= pages.num_rows <= 44
    lines = [json.loads(x) for x in (tiny / "MMDocIR" / F.MMDOCIR_QUESTIONS).read_text().splitlines()]
    assert [q["question_id"] for q in lines] == [str(10_000 + i) for i in range(40)]
    assert all(q["passage_id"] == [] and set(q) == set(F.QUESTION_FIELDS) for q in lines)
    per_doc = {d: pages.column("doc_name").to_pylist().count(d) for d in docs}
    assert all(q["num_of_pages"] == per_doc[q["doc_name"]] for q in lines)

    queries = pq.read_table(tiny / "M2KR" / F.M2KR_QUERIES)
    assert tuple(queries.column_names) == F.QUERY_COLUMNS
    assert queries.column("question_id").to_pylist() == [str(i) for i in range(40)]
    assert all(x == [] for x in queries.column("pos_item_ids").to_pylist())
    passages = pq.read_table(tiny / "M2KR" / F.M2KR_PASSAGES)
    assert tuple(passages.column_names) == F.PASSAGE_COLUMNS
    assert 36 <= passages.num_rows <= 48
    prefixes = {p.split("_")[0] for p in passages.column("passage_id").to_pylist()}
    assert {"WIT", "KVQA"} <= prefixes <= {"WIT", "KVQA", "EVQA", "OVEN", "INFOSEEK", "OKVQA"}

    data = load(tiny)
    assert data.docs is not None and data.passages is not None
    assert data.docs.gold is None and data.passages.gold is None  # the test files carry no gold
    kinds = [q.kind for q in data.passages.queries]
    assert kinds == sorted(kinds, key=M2KR_KINDS.index)  # the real file's row order
    assert set(kinds) == set(M2KR_KINDS)
    assert all((q.question == "") == (q.kind != "image_question") for q in data.passages.queries)
    assert Image.open(io.BytesIO(data.docs.pages.image(0))).format == "JPEG"


def test_truth_matches_the_data(tiny: Path) -> None:
    truth = load_truth(tiny)
    data = load(tiny)
    assert set(truth.mmdocir) == {q.question_id for q in data.docs.questions}
    assert set(truth.m2kr) == {q.question_id for q in data.passages.queries}
    pages = set(zip(data.docs.pages.doc_name, data.docs.pages.page_id, strict=True))
    for q in data.docs.questions:
        assert all((q.doc_name, p) in pages for p in truth.mmdocir[q.question_id])
    pids = set(data.passages.passages.passage_id)
    assert all(set(g) <= pids for g in truth.m2kr.values())
    assert {truth.kind[q.question_id] for q in data.passages.queries} == set(M2KR_KINDS)
    assert {truth.kind[q] for q in truth.mmdocir} <= {"text", "table", "chart", "figure"}


def test_two_gold_share_and_pages(tiny: Path) -> None:
    truth = load_truth(tiny)
    two = [g for g in truth.mmdocir.values() if len(g) == 2]
    assert 0.15 <= len(two) / len(truth.mmdocir) <= 0.25
    assert all(len(set(g)) == 2 for g in two)


def test_chart_and_figure_answers_only_in_vlm_text(tiny: Path) -> None:
    """What a chart or figure shows reaches the VLM description, never the OCR of its page."""
    truth, data = load_truth(tiny), load(tiny)
    rows = data.docs.pages.rows_of()
    doc_of = {q.question_id: q.doc_name for q in data.docs.questions}
    checked = 0
    for qid, kind in truth.kind.items():
        if kind not in ("chart", "figure") or qid not in truth.mmdocir:
            continue
        for answer, page in zip(truth.answer[qid], truth.mmdocir[qid], strict=True):
            i = rows[doc_of[qid]][int(page)]
            words = _tokens(answer)
            assert words <= _tokens(data.docs.pages.vlm_text[i]), (qid, answer)
            assert not words & _tokens(data.docs.pages.ocr_text[i]), (qid, answer)
            checked += 1
    assert checked >= 4


def test_questions_are_paraphrased(tiny: Path) -> None:
    truth, data = load_truth(tiny), load(tiny)
    texts = [t.lower() for t in data.docs.pages.vlm_text + data.docs.pages.ocr_text]
    assert not any(q.question.lower().rstrip("?") in t for q in data.docs.questions for t in texts)
    rows = data.docs.pages.rows_of()
    novel = 0
    text_qs = [q for q in data.docs.questions if truth.kind[q.question_id] == "text"]
    for q in text_qs:
        page = _tokens(
            " ".join(data.docs.pages.vlm_text[rows[q.doc_name][int(p)]] for p in truth.mmdocir[q.question_id])
        )
        novel += bool(_tokens(q.question) - page - {"what", "how", "much", "which", "did", "does", "figure"})
    assert novel >= len(text_qs) // 2  # synonyms: words the page does not print


def test_query_photos_are_never_screenshot_bytes(tiny: Path) -> None:
    data, truth = load(tiny), load_truth(tiny)
    shots = {hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in data.passages.passages.screenshot}
    photos = [hashlib.sha1(q.image_path.read_bytes()).hexdigest() for q in data.passages.queries]
    assert not shots & set(photos)
    assert len(set(photos)) == len(photos)
    names = {q.question_id: truth.answer[q.question_id][0] for q in data.passages.queries}
    assert not any(names[q.question_id].lower() in q.question.lower() for q in data.passages.queries)


def test_modality_matters_for_charts(tiny: Path) -> None:
    """A word-overlap ranker finds chart and figure pages from vlm_text far more often than from ocr_text."""
    truth, data = load_truth(tiny), load(tiny)
    rows = data.docs.pages.rows_of()
    hits = {"ocr_text": 0, "vlm_text": 0}
    for q in data.docs.questions:
        if truth.kind[q.question_id] not in ("chart", "figure"):
            continue
        qt = _tokens(q.question) - {"the", "of", "in", "what", "which", "is", "for", "does"}
        for field in hits:
            col = getattr(data.docs.pages, field)
            scores = [len(qt & _tokens(col[i])) for i in rows[q.doc_name]]
            hits[field] += str(int(np.argmax(scores))) in truth.mmdocir[q.question_id]
    assert hits["vlm_text"] >= hits["ocr_text"] + 2


def test_train_split_has_gold_and_other_documents(tiny: Path) -> None:
    train, test = load_train(tiny), load(tiny)
    assert len(train.docs.gold) == len(train.docs.questions)
    assert len(train.passages.gold) == len(train.passages.queries)
    assert not set(train.docs.pages.doc_name) & set(test.docs.pages.doc_name)


def test_out_is_never_clobbered(tiny: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(OutputError):
        generate(user, scale="tiny", progress=False)
    with pytest.raises(OutputError, match="not a data root"):
        generate(user, scale="tiny", progress=False, overwrite=True)
    assert (user / "notes.txt").read_text() == "keep"
    with pytest.raises(OutputError, match="already exists"):
        generate(tiny, scale="tiny", progress=False)
    assert not list(tmp_path.glob(".*tmp*"))


# ----------------------------------------------------------------------------------------------
# Hand-made files in each real layout


def _png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _parquet(path: Path, cols: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)


def make_mmdocir(folder: Path, **override) -> Path:
    cols = {
        "doc_name": ["a.pdf", "a.pdf", "b.pdf"],
        "passage_id": ["0", "1", "0"],
        "image_path": ["img/a_0.jpg", "img/a_1.jpg", "img/b_0.jpg"],
        "image_binary": [_png(), _png((0, 90, 0)), _png((0, 0, 90))],
        "ocr_text": ["revenue 2019", "costs", "cover"],
        "vlm_text": ["a page on revenue", "a chart of costs", "a cover"],
    }
    cols.update(override)
    _parquet(folder / F.MMDOCIR_PAGES, cols)
    _jsonl(
        folder / F.MMDOCIR_QUESTIONS,
        [
            {"question_id": "10000", "question": "What was revenue?", "doc_name": "a.pdf", "domain": "Financial report", "num_of_pages": 2, "passage_id": []},
            {"question_id": "10001", "question": "What is on the cover?", "doc_name": "b.pdf", "domain": "Brochure", "num_of_pages": 1, "passage_id": []},
        ],
    )  # fmt: skip
    return folder


def make_m2kr(folder: Path, shots: str = "Challenge", **override) -> Path:
    (folder / "query_images" / "KVQA").mkdir(parents=True, exist_ok=True)
    (folder / shots).mkdir(parents=True, exist_ok=True)
    for name in ("KVQA/0.jpg", "1.jpg", "2.jpg"):
        (folder / "query_images" / name).write_bytes(_png())
    for name in ("p0.png", "p1.png"):
        (folder / shots / name).write_bytes(_png((10, 10, 10)))
    q = {
        "question_id": ["0", "1", "2"],
        "question": [None, "What is this red tower known for?", ""],
        "instruction": [F.PERSON_INSTRUCTIONS[0], F.QUESTION_INSTRUCTIONS[0], F.WIT_INSTRUCTIONS[0]],
        "img_path": ["KVQA/0.jpg", "1.jpg", "2.jpg"],
        "pos_item_ids": [[], [], []],
    }
    q.update({k: v for k, v in override.items() if k in q})
    _parquet(folder / F.M2KR_QUERIES, q)
    p = {
        "passage_id": ["KVQA_0", "EVQA_0"],
        "passage_content": ["title: A content: a painter", "title: B content: a red tower"],
        "page_screenshot": ["p0.png", "p1.png"],
    }
    p.update({k: v for k, v in override.items() if k in p})
    _parquet(folder / F.M2KR_PASSAGES, p)
    return folder


def test_read_mmdocir_challenge_pair(tmp_path: Path) -> None:
    data = load(make_mmdocir(tmp_path / "MMDocIR-Challenge"))
    docs = data.docs
    assert data.passages is None and docs.gold is None
    assert [q.question_id for q in docs.questions] == ["10000", "10001"]
    assert docs.pages.rows_of() == {"a.pdf": [0, 1], "b.pdf": [2]}
    assert docs.pages.image(2) == _png((0, 0, 90))
    assert docs.questions[0].domain == "Financial report"
    assert pickle.loads(pickle.dumps(docs)).pages.image(1) == _png((0, 90, 0))  # can go to workers


def test_read_mmdocir_gold_from_annotations(tmp_path: Path) -> None:
    folder = make_mmdocir(tmp_path / "m")
    _jsonl(
        folder / F.MMDOCIR_ANNOTATIONS,
        [{"doc_name": "a.pdf", "domain": "x", "page_indices": [0, 1], "questions": [
            {"Q": "What was revenue? ", "A": "9", "page_id": [0, 1], "type": "['Chart', 'Table']", "layout_mapping": []}]}],
    )  # fmt: skip
    docs = load(folder).docs
    assert docs.gold == {"10000": ["0", "1"]} and docs.kind == {"10000": "chart"}


def test_read_mmdocir_evaluation_release(tmp_path: Path) -> None:
    folder = tmp_path / "eval"
    _parquet(folder / F.MMDOCIR_EVAL_PAGES, {
        "doc_name": ["a.pdf"], "domain": ["x"], "passage_id": ["0"], "image_path": [""], "image_binary": [_png()],
        "ocr_text": ["t"], "vlm_text": ["v"]})  # fmt: skip
    _jsonl(
        folder / F.MMDOCIR_ANNOTATIONS,
        [{"doc_name": "a.pdf", "questions": [{"Q": "q?", "page_id": [0], "type": "['Figure']"}]}],
    )
    docs = load(folder).docs
    assert [q.question_id for q in docs.questions] == ["10000"] and docs.gold == {"10000": ["0"]}
    assert docs.kind == {"10000": "figure"}


def test_read_mmdocir_image_from_path_when_no_bytes(tmp_path: Path) -> None:
    folder = make_mmdocir(tmp_path / "m", image_binary=pa.array([None, None, None], pa.binary()))
    (folder / "img").mkdir()
    (folder / "img" / "a_1.jpg").write_bytes(_png((1, 2, 3)))
    assert load(folder).docs.pages.image(1) == _png((1, 2, 3))


def test_read_m2kr_challenge(tmp_path: Path) -> None:
    for shots in ("Challenge", "passage_images/Challenge"):
        ps = load(make_m2kr(tmp_path / shots.replace("/", "_") / "M2KR-Challenge", shots=shots)).passages
        assert [q.kind for q in ps.queries] == ["image", "image_question", "wit"]
        assert [q.question for q in ps.queries] == ["", "What is this red tower known for?", ""]
        assert ps.queries[0].image_path.read_bytes() == _png()
        assert ps.passages.screenshot[1].name == "p1.png" and ps.gold is None


def test_read_m2kr_gold_and_generator_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_mmdocir(root / "MMDocIR")
    make_m2kr(root / "M2KR", pos_item_ids=[["KVQA_0"], ["EVQA_0"], ["EVQA_0", "KVQA_0"]])
    data = load(root)
    assert data.docs is not None and data.extra["layout"] == "challenge"
    assert data.passages.gold == {"0": ["KVQA_0"], "1": ["EVQA_0"], "2": ["EVQA_0", "KVQA_0"]}


def _preflmr(folder: Path, name: str) -> None:
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    (folder / "imgs" / "x.jpg").write_bytes(_png())
    _parquet(folder / f"{name}_data" / "test-00000-of-00001.parquet", {
        "question_id": [f"{name}_q0", f"{name}_q1"], "question": [None, None],
        "instruction": [F.WIT_INSTRUCTIONS[0]] * 2, "img_path": ["imgs/x.jpg", "imgs/x.jpg"],
        "pos_item_ids": [["p1"], ["p0", "p1"]], "answers": [["a"], ["b"]]})  # fmt: skip
    _parquet(folder / f"{name}_passages" / "test_passages-00000-of-00001.parquet",
             {"passage_id": ["p0", "p1"], "passage_content": ["first", "second"]})  # fmt: skip


def test_read_preflmr(tmp_path: Path) -> None:
    _preflmr(tmp_path / "m2kr", "WIT")
    ps = load(tmp_path / "m2kr").passages
    assert [q.kind for q in ps.queries] == ["wit", "wit"]
    assert ps.gold == {"WIT_q0": ["p1"], "WIT_q1": ["p0", "p1"]}
    assert ps.passages.screenshot == [None, None]
    _preflmr(tmp_path / "m2kr", "KVQA")
    with pytest.raises(DataError, match=r"2 M2KR sub-sets \['KVQA', 'WIT'\]"):
        load(tmp_path / "m2kr")
    assert [q.kind for q in load(tmp_path / "m2kr", subset="KVQA").passages.queries] == ["image", "image"]


def _image_struct(data: list[bytes | None], paths: list[str | None]) -> pa.Array:
    return pa.array([{"bytes": b, "path": p} for b, p in zip(data, paths, strict=True)],
                    pa.struct([("bytes", pa.binary()), ("path", pa.string())]))  # fmt: skip


def test_read_vidore_qa(tmp_path: Path) -> None:
    folder = tmp_path / "docvqa_test_subsampled"
    _parquet(folder / "data" / "test-00000-of-00001.parquet", {
        "query": ["where?", None, "where?", "when?"],
        "image": _image_struct([_png(), _png((0, 1, 0)), _png(), _png((0, 0, 1))], ["a", "b", "a", "c"]),
        "image_filename": ["a.png", "b.png", "c.png", "c.png"],
        "page": ["1", "2", "3", "3"]})  # fmt: skip
    data = load(folder)
    docs = data.docs
    assert docs.pages.page_id == ["a.png", "b.png", "c.png"]  # b.png has no question but is in the pool
    assert set(docs.pages.doc_name) == {"vidore:docvqa_test_subsampled"}
    assert [q.question for q in docs.questions] == ["where?", "when?"]  # deduplicated by text
    assert docs.gold == {"0": ["a.png", "c.png"], "1": ["c.png"]}
    assert docs.pages.image(1) == _png((0, 1, 0))
    assert pickle.loads(pickle.dumps(docs)).pages.image(2) == _png()
    assert load(folder / "data" / "test-00000-of-00001.parquet").docs.gold == docs.gold  # one file


def test_read_vidore_beir(tmp_path: Path) -> None:
    folder = tmp_path / "vidore_v2"
    _parquet(
        folder / "corpus" / "test-00000-of-00001.parquet",
        {"corpus-id": [7, 8, 9], "image": _image_struct([_png(), _png(), _png((9, 9, 9))], [None] * 3)},
    )
    _parquet(
        folder / "queries" / "test-00000-of-00001.parquet", {"query-id": [1, 2], "query": ["q one", "q two"]}
    )
    _parquet(
        folder / "qrels" / "test-00000-of-00001.parquet",
        {"query-id": [1, 1, 2], "corpus-id": [7, 9, 8], "score": [2, 1, 0]},
    )
    data = load(folder)
    assert data.docs.gold == {"1": ["7", "9"]}
    assert data.extra["vidore_qrels"] == {"1": {"7": 2, "9": 1}, "2": {"8": 0}}
    assert data.docs.pages.image(2) == _png((9, 9, 9))


# ----------------------------------------------------------------------------------------------
# Bad input: each problem names its file, column and row


_GOOD_LINE = json.dumps({"question_id": "1", "question": "q", "doc_name": "a.pdf"}) + "\n"


def _bad_pages(tmp: Path, **cols) -> Path:
    return make_mmdocir(tmp / "m", **cols)


BAD = {
    "missing pages file": (
        lambda t: (make_mmdocir(t / "m"), (t / "m" / F.MMDOCIR_PAGES).unlink(), t / "m")[-1],
        [F.MMDOCIR_PAGES, "file not found"],
    ),
    "pointed at a sub-folder": (
        lambda t: (make_m2kr(t / "root" / "M2KR"), t / "root" / "M2KR" / "challenge_data")[-1],
        ["challenge_data", "sub-folder of", "point at"],
    ),
    "missing column": (
        lambda t: (
            _parquet(
                t / "m" / F.MMDOCIR_PAGES,
                {"doc_name": ["a"], "passage_id": ["0"], "ocr_text": ["x"], "image_binary": [_png()]},
            ),
            _jsonl(t / "m" / F.MMDOCIR_QUESTIONS, []),
            t / "m",
        )[-1],
        [F.MMDOCIR_PAGES, "'vlm_text'", "missing"],
    ),  # fmt: skip
    "wrong dtype": (
        lambda t: _bad_pages(t, ocr_text=[1, 2, 3]),
        [F.MMDOCIR_PAGES, "'ocr_text'", "int64", "expected string"],
    ),
    "duplicated page": (
        lambda t: _bad_pages(t, passage_id=["0", "0", "0"]),
        [F.MMDOCIR_PAGES, "'passage_id'", "row 1", "first at row 0"],
    ),
    "null id": (
        lambda t: _bad_pages(t, doc_name=["a.pdf", None, "b.pdf"]),
        [F.MMDOCIR_PAGES, "'doc_name'", "row 1 is null"],
    ),
    "duplicated question id": (
        lambda t: (
            make_mmdocir(t / "m"),
            _jsonl(
                t / "m" / F.MMDOCIR_QUESTIONS,
                [
                    {"question_id": "1", "question": "q", "doc_name": "a.pdf"},
                    {"question_id": "1", "question": "r", "doc_name": "a.pdf"},
                ],
            ),
            t / "m",
        )[-1],
        [F.MMDOCIR_QUESTIONS, "'question_id'", "line 2", "repeats line 1"],
    ),  # fmt: skip
    "question about a document with no pages": (
        lambda t: (
            make_mmdocir(t / "m"),
            _jsonl(
                t / "m" / F.MMDOCIR_QUESTIONS,
                [
                    {"question_id": "1", "question": "q", "doc_name": "a.pdf"},
                    {"question_id": "2", "question": "q", "doc_name": "zz.pdf"},
                ],
            ),
            t / "m",
        )[-1],
        [F.MMDOCIR_QUESTIONS, "'doc_name'", "line 2", "'zz.pdf' has no pages"],
    ),  # fmt: skip
    "not JSON": (
        lambda t: (
            make_mmdocir(t / "m"),
            (t / "m" / F.MMDOCIR_QUESTIONS).write_text(_GOOD_LINE + "{oops\n"),
            t / "m",
        )[-1],
        [F.MMDOCIR_QUESTIONS, "line 2: not JSON"],
    ),
    "missing question field": (
        lambda t: (
            make_mmdocir(t / "m"),
            _jsonl(t / "m" / F.MMDOCIR_QUESTIONS, [{"question_id": "1", "doc_name": "a.pdf"}]),
            t / "m",
        )[-1],
        [F.MMDOCIR_QUESTIONS, "'question'", "line 1: missing"],
    ),
    "corrupt parquet": (
        lambda t: (
            make_mmdocir(t / "m"),
            (t / "m" / F.MMDOCIR_PAGES).write_bytes(b"PAR1 not really"),
            t / "m",
        )[-1],
        [F.MMDOCIR_PAGES, "cannot be read as parquet"],
    ),
    "image path with ..": (
        lambda t: make_m2kr(t / "M2KR", img_path=["KVQA/0.jpg", "../../etc/x.jpg", "2.jpg"]),
        [F.M2KR_QUERIES, "'img_path'", "row 1", "leaves the data folder"],
    ),
    "absolute image path": (
        lambda t: make_m2kr(t / "M2KR", page_screenshot=["p0.png", "/etc/passwd"]),
        [F.M2KR_PASSAGES, "'page_screenshot'", "row 1", "absolute"],
    ),
    "missing image file": (
        lambda t: make_m2kr(t / "M2KR", img_path=["KVQA/0.jpg", "1.jpg", "nope.jpg"]),
        [F.M2KR_QUERIES, "'img_path'", "row 2", "not found"],
    ),
    "duplicated passage id": (
        lambda t: make_m2kr(t / "M2KR", passage_id=["X_0", "X_0"]),
        [F.M2KR_PASSAGES, "'passage_id'", "row 1"],
    ),
    "gold passage not in the pool": (
        lambda t: make_m2kr(t / "M2KR", pos_item_ids=[[], ["EVQA_9"], []]),
        [F.M2KR_QUERIES, "'pos_item_ids'", "row 1", "'EVQA_9'"],
    ),
    "qrels about an unknown page": (
        lambda t: (
            _parquet(
                t / "v" / "corpus" / "test.parquet",
                {"corpus-id": ["a"], "image": _image_struct([_png()], [None])},
            ),
            _parquet(t / "v" / "queries" / "test.parquet", {"query-id": ["q"], "query": ["x"]}),
            _parquet(
                t / "v" / "qrels" / "test.parquet",
                {"query-id": ["q", "q"], "corpus-id": ["a", "b"], "score": [1, 1]},
            ),
            t / "v",
        )[-1],
        ["qrels", "'corpus-id'", "row 1", "'b'"],
    ),
    "nothing here": (
        lambda t: (t / "empty").mkdir() or t / "empty",
        ["holds no Track 1 data", "expected one of"],
    ),
    "no such path": (lambda t: t / "absent", ["absent", "not found"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_named(case: str, tmp_path: Path) -> None:
    build, needles = BAD[case]
    target = build(tmp_path)
    with pytest.raises(DataError) as err:
        load(target)
    for needle in needles:
        assert needle in str(err.value), (case, str(err.value))


def test_unreadable_image_bytes_reported_when_accessed(tmp_path: Path) -> None:
    docs = load(_bad_pages(tmp_path, image_binary=[_png(), b"not an image", _png()])).docs  # reading is lazy
    assert docs.pages.image(0) == _png()
    with pytest.raises(DataError, match=r"image_binary'.*row 1 \(document 'a.pdf', page 1\).*not a JPEG"):
        docs.pages.image(1)


def test_truth_and_train_refused_on_real_layouts(tmp_path: Path) -> None:
    folder = make_mmdocir(tmp_path / "m")
    with pytest.raises(DataError, match="gold.jsonl.*only data written by the generator"):
        load_truth(folder)
    with pytest.raises(DataError, match="train.*only the generator writes a train split"):
        load_train(folder)
