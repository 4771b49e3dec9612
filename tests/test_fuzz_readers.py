"""Property-based fuzzing of every reader of user files (hypothesis).

Each reader is given a small valid input, mutated: columns dropped, renamed, added or retyped,
cells set to NaN, inf, negative, huge, null or wrong-typed values, list lengths changed, rows
duplicated or dropped, the file truncated, emptied or overwritten. Every example must end in one of
mmctr's named errors (naming the file, and the column or field where there is one) or in a result
that obeys the reader's contract; any other exception fails the test.

The default run tries a bounded number of examples per reader; `-m slow` tries many more. Set
MMCTR_FUZZ_COUNTS=FILE to write how many inputs each reader was given (docs/reliability.md).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmctr.errors import ConfigError, DataError, MMCTRError, SubmissionError

FAST = settings(
    max_examples=30, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
SLOW = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)

TRIED: Counter[str] = Counter()  # inputs given to each reader in this session
OUTCOMES: Counter[str] = Counter()  # "<reader>: ok" / "<reader>: <ErrorClass>"


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    path = os.environ.get("MMCTR_FUZZ_COUNTS")
    if path:
        old = json.loads(Path(path).read_text()) if Path(path).exists() else {"tried": {}, "outcomes": {}}
        for key, counter in (("tried", TRIED), ("outcomes", OUTCOMES)):
            for k, v in counter.items():
                old[key][k] = old[key].get(k, 0) + v
        Path(path).write_text(json.dumps(old, indent=2, sort_keys=True))


class Workdir:
    """A fresh folder per example, under one module-scoped temporary directory."""

    def __init__(self, root: Path):
        self.root, self.n = root, 0

    def new(self) -> Path:
        self.n += 1
        d = self.root / f"ex{self.n}"
        d.mkdir()
        return d


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    return Workdir(tmp_path_factory.mktemp("fuzz"))


def outcome(reader: str, fn: Callable[[], Any], named: tuple[type[MMCTRError], ...], where: str) -> Any:
    """Run `fn`; a named error must mention `where` (the file or folder); anything else fails."""
    TRIED[reader] += 1
    try:
        result = fn()
    except named as err:
        OUTCOMES[f"{reader}: {type(err).__name__}"] += 1
        assert where in str(err), f"{reader}: error does not name {where!r}: {err}"
        assert "\n" not in str(err).strip() or len(str(err)) < 2000
        return err
    OUTCOMES[f"{reader}: ok"] += 1
    return result


# ----------------------------------------------------------------------------------------------
# Mutations of a table given as {column: list of python values}

NASTY = [
    None,
    -1,
    0,
    1,
    11,
    2**31,
    -(2**40),
    2**63 - 1,
    float("nan"),
    float("inf"),
    -float("inf"),
    0.5,
    "x",
    "",
    "../../etc/passwd",
    "/etc/passwd",
    True,
    [],
    [1],
    [-1, 2],
    [None],
    {"a": 1},
]
RETYPES = ["string", "float64", "int32", "null", "list<string>", "bool", "binary"]

_index = st.integers(0, 10_000)
cell_value = st.one_of(
    st.sampled_from(NASTY), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=8)
)
mutation = st.one_of(
    st.tuples(st.just("drop"), _index),
    st.tuples(st.just("rename"), _index),
    st.tuples(st.just("extra"), cell_value),
    st.tuples(st.just("cell"), _index, _index, cell_value),
    st.tuples(st.just("list_len"), _index, _index, st.integers(0, 130)),
    st.tuples(st.just("list_elem"), _index, _index, _index, cell_value),
    st.tuples(st.just("retype"), _index, st.sampled_from(RETYPES)),
    st.tuples(st.just("dup_row"), _index),
    st.tuples(st.just("keep_rows"), st.integers(0, 3)),
    st.tuples(st.just("reverse")),
)
file_damage = st.one_of(
    st.just(("none",)),
    st.just(("none",)),
    st.just(("none",)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.just(("zero",)),
    st.tuples(st.just("garbage"), st.binary(max_size=64)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 255)),
)


def mutate(cols: dict[str, list], types: dict[str, pa.DataType], ops: list[tuple]) -> pa.Table:
    cols = {k: list(v) for k, v in cols.items()}
    types = dict(types)
    for op in ops:
        names = list(cols)
        n_rows = len(next(iter(cols.values()))) if cols else 0
        kind = op[0]
        if kind in ("drop", "rename", "cell", "list_len", "list_elem", "retype") and not names:
            continue
        if kind == "drop":
            name = names[op[1] % len(names)]
            del cols[name]
        elif kind == "rename":
            name = names[op[1] % len(names)]
            cols[name + "_x"] = cols.pop(name)
            types[name + "_x"] = types.pop(name, None)
        elif kind == "extra":
            cols[f"extra{len(cols)}"] = [op[1]] * n_rows
        elif kind == "cell" and n_rows:
            cols[names[op[1] % len(names)]][op[2] % n_rows] = op[3]
        elif kind in ("list_len", "list_elem") and n_rows:
            col = cols[names[op[1] % len(names)]]
            r = op[2] % n_rows
            v = col[r]
            if not isinstance(v, list):
                continue
            if kind == "list_len":
                col[r] = (v * (op[3] // max(len(v), 1) + 1))[: op[3]] if v else [0] * op[3]
            elif v:
                v = list(v)
                v[op[3] % len(v)] = op[4]
                col[r] = v
        elif kind == "retype":
            name = names[op[1] % len(names)]
            types[name] = {
                "string": pa.string(),
                "float64": pa.float64(),
                "int32": pa.int32(),
                "null": pa.null(),
                "list<string>": pa.list_(pa.string()),
                "bool": pa.bool_(),
                "binary": pa.binary(),
            }[op[2]]
        elif kind == "dup_row" and n_rows:
            r = op[1] % n_rows
            for c in cols.values():
                c.insert(r, c[r])
        elif kind == "keep_rows":
            for k in cols:
                cols[k] = cols[k][: op[1]]
        elif kind == "reverse":
            for k in cols:
                cols[k] = cols[k][::-1]
    return pa.table({k: _column(v, types.get(k)) for k, v in cols.items()})


def _column(values: list, typ: pa.DataType | None) -> pa.Array:
    """The values as an arrow array of `typ` where they fit it, else of an inferred type, else as
    strings (what a file written by another tool may hold)."""
    for attempt in (typ, None):
        if attempt is None and typ is not None and pa.types.is_null(typ):
            return pa.nulls(len(values))
        try:
            return pa.array(values, type=attempt)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass
        if attempt is not None:
            try:
                return pa.array(values).cast(attempt, safe=False)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                pass
    return pa.array([None if v is None else repr(v) for v in values], pa.string())


def damage(path: Path, how: tuple) -> None:
    kind = how[0]
    if kind == "none" or not path.exists():
        return
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: int(len(data) * how[1])])
    elif kind == "zero":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(how[1])
    elif kind == "flip" and data:
        i = min(int(len(data) * how[1]), len(data) - 1)
        path.write_bytes(data[:i] + bytes([how[2]]) + data[i + 1 :])


def write_parquet(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


# ----------------------------------------------------------------------------------------------
# MMCTR: split parquets, item_info, item_feature

N_ITEMS = 6


def _seq(items: list[int]) -> list[int]:
    return [0] * (100 - len(items)) + items


SPLIT = {
    "user_id": [1, 2, 3, 4],
    "item_seq": [_seq([1, 2]), _seq([3]), _seq([]), _seq([5, 4, 3])],
    "item_id": [1, 5, 2, 3],
    "likes_level": [0, 10, 3, 4],
    "views_level": [10, 0, 1, 2],
    "label": [1.0, 0.0, 0.0, 1.0],
}
SPLIT_TYPES = {
    "user_id": pa.int64(),
    "item_seq": pa.list_(pa.int64()),
    "item_id": pa.int64(),
    "likes_level": pa.int64(),
    "views_level": pa.int64(),
    "label": pa.float64(),
}
_rng = np.random.default_rng(0)
ITEM_INFO = {
    "item_id": list(range(N_ITEMS)),
    "item_tags": [[0] * 5] + [[0, 0, 0, i, i + 1] for i in range(1, N_ITEMS)],
    "item_emb_d128": [[0.0] * 128]
    + [list(_rng.normal(size=128).astype(np.float32)) for _ in range(N_ITEMS - 1)],
}
ITEM_INFO_TYPES = {
    "item_id": pa.int64(),
    "item_tags": pa.list_(pa.int64()),
    "item_emb_d128": pa.list_(pa.float32()),
}
ITEM_FEATURE = {
    "item_id": list(range(1, N_ITEMS)),
    "item_title": [f"title {i}" for i in range(1, N_ITEMS)],
    "item_tags": [[0, 0, 0, 0, i] for i in range(1, N_ITEMS)],
    "likes_level": [1, 2, 3, 4, 10],
    "views_level": [0, 0, 5, 5, 9],
}
ITEM_FEATURE_TYPES = {
    "item_id": pa.int64(),
    "item_title": pa.string(),
    "item_tags": pa.list_(pa.int64()),
    "likes_level": pa.int64(),
    "views_level": pa.int64(),
}


def check_split(work: Workdir, ops: list, how: tuple) -> None:
    from mmctr.data.reader import read_split

    path = write_parquet(work.new() / "train.parquet", mutate(SPLIT, SPLIT_TYPES, ops))
    damage(path, how)
    got = outcome(
        "MMCTR split parquet", lambda: read_split(path, N_ITEMS, max_len=64), (DataError,), str(path)
    )
    if isinstance(got, MMCTRError):
        return
    n = pq.ParquetFile(path).metadata.num_rows
    assert len(got) == n and got.hist.shape == (n, 64)
    assert ((got.item_id >= 1) & (got.item_id < N_ITEMS)).all()
    assert ((got.hist >= 0) & (got.hist < N_ITEMS)).all()
    assert ((got.likes >= 0) & (got.likes <= 10)).all() and ((got.views >= 0) & (got.views <= 10)).all()
    assert np.isfinite(got.label).all() and ((got.label >= 0) & (got.label <= 1)).all()


def check_item_info(work: Workdir, ops: list, feature_ops: list, how: tuple) -> None:
    from mmctr.data.reader import read_item_info

    d = work.new()
    path = write_parquet(d / "item_info.parquet", mutate(ITEM_INFO, ITEM_INFO_TYPES, ops))
    feature = write_parquet(d / "item_feature.parquet", mutate(ITEM_FEATURE, ITEM_FEATURE_TYPES, feature_ops))
    damage(path if how[0] != "flip" else feature, how)
    got = outcome(
        "MMCTR item_info + item_feature", lambda: read_item_info(path, feature), (DataError,), str(d)
    )
    if isinstance(got, MMCTRError):
        return
    n = got.n_items
    assert got.tags.shape == (n, 5) and got.emb.shape == (n, 128) and np.isfinite(got.emb).all()
    assert (got.tags >= 0).all() and not got.emb[0].any() and not got.tags[0].any()
    assert ((got.likes >= 0) & (got.likes <= 10)).all() and got.likes.shape == (n,)


mutations = st.lists(mutation, max_size=4)


@FAST
@given(ops=mutations, how=file_damage)
def test_split_parquet(work: Workdir, ops: list, how: tuple) -> None:
    check_split(work, ops, how)


@FAST
@given(ops=mutations, feature_ops=st.lists(mutation, max_size=2), how=file_damage)
def test_item_info(work: Workdir, ops: list, feature_ops: list, how: tuple) -> None:
    check_item_info(work, ops, feature_ops, how)


@pytest.mark.slow
@SLOW
@given(ops=st.lists(mutation, max_size=8), how=file_damage)
def test_split_parquet_slow(work: Workdir, ops: list, how: tuple) -> None:
    check_split(work, ops, how)


@pytest.mark.slow
@SLOW
@given(ops=st.lists(mutation, max_size=8), feature_ops=st.lists(mutation, max_size=4), how=file_damage)
def test_item_info_slow(work: Workdir, ops: list, feature_ops: list, how: tuple) -> None:
    check_item_info(work, ops, feature_ops, how)


# ----------------------------------------------------------------------------------------------
# Track 1: MMDocIR, M2KR, ViDoRe


def _png(color: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


PAGES = {
    "doc_name": ["a.pdf", "a.pdf", "b.pdf"],
    "passage_id": ["0", "1", "0"],
    "image_path": ["img/a_0.png", "img/a_1.png", "img/b_0.png"],
    "image_binary": [_png(), None, _png((0, 0, 90))],
    "ocr_text": ["revenue 2019", "costs", "cover"],
    "vlm_text": ["a page on revenue", "a chart of costs", "a cover"],
}
PAGES_TYPES = {k: pa.binary() if k == "image_binary" else pa.string() for k in PAGES}
QUESTIONS = [
    {
        "question_id": "1",
        "question": "What was revenue?",
        "doc_name": "a.pdf",
        "domain": "x",
        "passage_id": ["0"],
    },
    {"question_id": "2", "question": "What is on the cover?", "doc_name": "b.pdf", "passage_id": []},
]
JSON_NASTY = [None, -1, 0, 1.5, float("nan"), "", "zz.pdf", "1", [], ["9"], [0, 1], {"a": 1}, True, "x" * 50]

line_mutation = st.one_of(
    st.tuples(st.just("drop_key"), _index, _index),
    st.tuples(
        st.just("set_key"), _index, st.sampled_from([*QUESTIONS[0], "extra"]), st.sampled_from(JSON_NASTY)
    ),
    st.tuples(st.just("dup_line"), _index),
    st.tuples(st.just("raw_line"), st.sampled_from(["{oops", "[]", "1", '"text"', "null", "{}", "\x00\xff"])),
    st.tuples(st.just("drop_line"), _index),
)


def write_jsonl(path: Path, rows: list[dict], ops: list[tuple], how: tuple) -> Path:
    rows = [dict(r) for r in rows]
    raw: list[str] = []
    for op in ops:
        if op[0] == "drop_key" and rows:
            r = rows[op[1] % len(rows)]
            if r:
                del r[list(r)[op[2] % len(r)]]
        elif op[0] == "set_key" and rows:
            rows[op[1] % len(rows)][op[2]] = op[3]
        elif op[0] == "dup_line" and rows:
            rows.append(dict(rows[op[1] % len(rows)]))
        elif op[0] == "raw_line":
            raw.append(op[1])
        elif op[0] == "drop_line" and rows:
            rows.pop(op[1] % len(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + "".join(x + "\n" for x in raw)
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    damage(path, how)
    return path


def _images_inside(root: Path, paths: list[Path | None]) -> None:
    """A loaded path to an image never leaves the data folder (symlinks resolved)."""
    top = root.resolve()
    for p in paths:
        if p is not None:
            assert Path(p).resolve().is_relative_to(top), f"{p} is outside {root}"


def _touch_pages(docs: Any, where: str) -> None:
    """Ask for every page image: each is the bytes of an image or a named DataError."""
    for i in range(len(docs.pages)):
        try:
            data = docs.pages.image(i)
        except DataError as err:
            assert where in str(err), err
            continue
        assert data is None or Image.open(io.BytesIO(data)).size[0] > 0


def check_mmdocir(work: Workdir, page_ops: list, q_ops: list, how: tuple, damage_pages: bool) -> None:
    from mmctr.retrieval.data import formats as F
    from mmctr.retrieval.data import load

    folder = work.new() / "MMDocIR"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "a_1.png").write_bytes(_png((0, 90, 0)))
    pages = write_parquet(folder / F.MMDOCIR_PAGES, mutate(PAGES, PAGES_TYPES, page_ops))
    write_jsonl(folder / F.MMDOCIR_QUESTIONS, QUESTIONS, q_ops, ("none",) if damage_pages else how)
    if damage_pages:
        damage(pages, how)
    got = outcome("Track 1 MMDocIR", lambda: load(folder), (DataError,), str(folder))
    if isinstance(got, MMCTRError):
        return
    docs = got.docs
    assert len(docs.pages.doc_name) == len(docs.pages.page_id) == len(docs.pages.ocr_text)
    ids = [q.question_id for q in docs.questions]
    assert len(ids) == len(set(ids))
    pages_of = {(d, p) for d, p in zip(docs.pages.doc_name, docs.pages.page_id, strict=True)}
    for q in docs.questions:
        assert isinstance(q.question, str) and any(d == q.doc_name for d, _ in pages_of)
        for p in (docs.gold or {}).get(q.question_id, []):
            assert (q.doc_name, p) in pages_of
    _touch_pages(docs, str(folder))


QUERIES = {
    "question_id": ["0", "1", "2"],
    "question": [None, "What is this red tower known for?", ""],
    "instruction": ["Identify the person.", "Answer the question.", "Find the article."],
    "img_path": ["KVQA/0.png", "1.png", "2.png"],
    "pos_item_ids": [["KVQA_0"], [], ["EVQA_0", "KVQA_0"]],
}
QUERIES_TYPES = {k: pa.list_(pa.string()) if k == "pos_item_ids" else pa.string() for k in QUERIES}
PASSAGES = {
    "passage_id": ["KVQA_0", "EVQA_0"],
    "passage_content": ["title: A content: a painter", "title: B content: a red tower"],
    "page_screenshot": ["p0.png", "p1.png"],
}
PASSAGES_TYPES = {k: pa.string() for k in PASSAGES}


def check_m2kr(work: Workdir, q_ops: list, p_ops: list, how: tuple, which: bool) -> None:
    from mmctr.retrieval.data import formats as F
    from mmctr.retrieval.data import load

    root = work.new()
    folder = root / "M2KR"
    (folder / "query_images" / "KVQA").mkdir(parents=True)
    (folder / "Challenge").mkdir(parents=True)
    for name in ("KVQA/0.png", "1.png", "2.png"):
        (folder / "query_images" / name).write_bytes(_png())
    for name in ("p0.png", "p1.png"):
        (folder / "Challenge" / name).write_bytes(_png((10, 10, 10)))
    (root / "outside.png").write_bytes(_png())
    # a symlink inside the data folder that points out of it
    (folder / "query_images" / "link.png").symlink_to(root / "outside.png")
    q = write_parquet(folder / F.M2KR_QUERIES, mutate(QUERIES, QUERIES_TYPES, q_ops))
    p = write_parquet(folder / F.M2KR_PASSAGES, mutate(PASSAGES, PASSAGES_TYPES, p_ops))
    damage(q if which else p, how)
    got = outcome("Track 1 M2KR", lambda: load(root), (DataError,), str(folder))
    if isinstance(got, MMCTRError):
        return
    ps = got.passages
    assert len(ps.passages.passage_id) == len(set(ps.passages.passage_id)) == len(ps.passages.text)
    qids = [x.question_id for x in ps.queries]
    assert len(qids) == len(set(qids))
    _images_inside(folder, [x.image_path for x in ps.queries] + list(ps.passages.screenshot))
    for g in (ps.gold or {}).values():
        assert set(g) <= set(ps.passages.passage_id)


VIDORE_SYMLINK = "link.png"


def check_vidore(work: Workdir, c_ops: list, q_ops: list, r_ops: list, how: tuple, which: int) -> None:
    from mmctr.retrieval.data import load

    root = work.new()
    folder = root / "vidore"
    corpus = {
        "corpus-id": [7, 8, 9],
        "image": [
            {"bytes": _png(), "path": None},
            {"bytes": None, "path": "p8.png"},
            {"bytes": _png(), "path": "x"},
        ],
    }
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    (folder / "corpus").mkdir(parents=True)
    (folder / "corpus" / "p8.png").write_bytes(_png((1, 2, 3)))
    (root / "outside.png").write_bytes(_png())
    (folder / "corpus" / VIDORE_SYMLINK).symlink_to(root / "outside.png")
    files = [
        write_parquet(
            folder / "corpus" / "test-0.parquet",
            mutate(corpus, {"corpus-id": pa.int64(), "image": struct}, c_ops),
        ),
        write_parquet(
            folder / "queries" / "test-0.parquet",
            mutate({"query-id": [1, 2], "query": ["q one", "q two"]}, {"query-id": pa.int64()}, q_ops),
        ),
        write_parquet(
            folder / "qrels" / "test-0.parquet",
            mutate({"query-id": [1, 1, 2], "corpus-id": [7, 9, 8], "score": [2, 1, 0]}, {}, r_ops),
        ),
    ]
    damage(files[which % 3], how)
    got = outcome("Track 1 ViDoRe", lambda: load(folder), (DataError,), str(folder))
    if isinstance(got, MMCTRError):
        return
    docs = got.docs
    for g in (docs.gold or {}).values():
        assert set(g) <= set(docs.pages.page_id)
    _touch_pages(docs, str(folder))


page_mutation = st.one_of(mutation, st.tuples(st.just("cell"), _index, _index, st.sampled_from(
    ["../x.png", "/etc/passwd", "img/../../x.png", "img/a_1.png", "nope.png", "link.png", b"not an image"]
)))  # fmt: skip


@FAST
@given(page_ops=st.lists(page_mutation, max_size=3), q_ops=st.lists(line_mutation, max_size=3), how=file_damage,
       damage_pages=st.booleans())  # fmt: skip
def test_mmdocir(work: Workdir, page_ops: list, q_ops: list, how: tuple, damage_pages: bool) -> None:
    check_mmdocir(work, page_ops, q_ops, how, damage_pages)


@FAST
@given(q_ops=st.lists(page_mutation, max_size=3), p_ops=st.lists(page_mutation, max_size=3), how=file_damage,
       which=st.booleans())  # fmt: skip
def test_m2kr(work: Workdir, q_ops: list, p_ops: list, how: tuple, which: bool) -> None:
    check_m2kr(work, q_ops, p_ops, how, which)


@FAST
@given(c_ops=st.lists(page_mutation, max_size=3), q_ops=st.lists(mutation, max_size=2),
       r_ops=st.lists(mutation, max_size=2), how=file_damage, which=st.integers(0, 2))  # fmt: skip
def test_vidore(work: Workdir, c_ops: list, q_ops: list, r_ops: list, how: tuple, which: int) -> None:
    check_vidore(work, c_ops, q_ops, r_ops, how, which)


@pytest.mark.slow
@SLOW
@given(page_ops=st.lists(page_mutation, max_size=6), q_ops=st.lists(line_mutation, max_size=6), how=file_damage,
       damage_pages=st.booleans())  # fmt: skip
def test_mmdocir_slow(work: Workdir, page_ops: list, q_ops: list, how: tuple, damage_pages: bool) -> None:
    check_mmdocir(work, page_ops, q_ops, how, damage_pages)


@pytest.mark.slow
@SLOW
@given(q_ops=st.lists(page_mutation, max_size=6), p_ops=st.lists(page_mutation, max_size=6), how=file_damage,
       which=st.booleans())  # fmt: skip
def test_m2kr_slow(work: Workdir, q_ops: list, p_ops: list, how: tuple, which: bool) -> None:
    check_m2kr(work, q_ops, p_ops, how, which)


@pytest.mark.slow
@SLOW
@given(c_ops=st.lists(page_mutation, max_size=6), q_ops=st.lists(mutation, max_size=4),
       r_ops=st.lists(mutation, max_size=4), how=file_damage, which=st.integers(0, 2))  # fmt: skip
def test_vidore_slow(work: Workdir, c_ops: list, q_ops: list, r_ops: list, how: tuple, which: int) -> None:
    check_vidore(work, c_ops, q_ops, r_ops, how, which)


# ----------------------------------------------------------------------------------------------
# YAML configs (`mmctr train --config`)

yaml_value = st.recursive(
    st.one_of(
        st.sampled_from(
            [None, True, False, 0, -1, 1, 2**40, 0.5, -0.5, float("nan"), float("inf"), "", "x", "1e-3"]
        ),
        st.integers(-(2**64), 2**64),
        st.floats(),
        st.text(max_size=6),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
TRAIN_KEYS = ["lr", "batch_size", "eval_batch_size", "epochs", "patience", "max_len", "seed", "bf16", "threads",
              "min_lr", "lr_decay", "embedding_reg", "pairwise_weight", "max_steps", "nope"]  # fmt: skip
MODEL_KEYS = ["embedding_dim", "dnn_hidden", "attention_hidden", "attention_dropout", "net_dropout",
              "batch_norm", "use_tags", "user_buckets", "hist_levels", "nope"]  # fmt: skip
config_doc = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "model": st.sampled_from(["din", "lr", None, 3]),
            "train": st.one_of(
                st.dictionaries(st.sampled_from(TRAIN_KEYS), yaml_value, max_size=3), yaml_value
            ),
            "model_params": st.one_of(
                st.dictionaries(st.sampled_from(MODEL_KEYS), yaml_value, max_size=3), yaml_value
            ),
            "extra": yaml_value,
        },
    ),
    yaml_value,
)
raw_yaml = st.sampled_from(["", "{", "train: [", "- 1\n- 2", "!!python/object/apply:os.system ['echo hi']",
                            "train: !!python/name:os.system", "\t\x00", "a: &x [*x]", "train:\n  lr: .nan"])  # fmt: skip


def check_config(work: Workdir, doc: Any, raw: str | None) -> None:
    from helpers import random_items
    from mmctr.config import resolve_run_config
    from mmctr.training.run_dir import build_model

    path = work.new() / "my.yaml"
    path.write_text(raw if raw is not None else yaml.safe_dump(doc, allow_unicode=True))

    def build():
        cfg = resolve_run_config("din", path)
        with torch.device("meta"):  # sizes are checked, not allocated
            return cfg, build_model(cfg, random_items(5))

    got = outcome("YAML config", build, (ConfigError,), str(path))
    if isinstance(got, MMCTRError):
        return
    cfg, _model = got
    t = cfg.train
    assert t.batch_size >= 1 and t.eval_batch_size >= 1 and 1 <= t.max_len <= 100
    assert math.isfinite(t.lr) and t.lr > 0 and t.epochs >= 0 and t.patience >= 0


@FAST
@given(doc=config_doc, raw=st.one_of(st.none(), raw_yaml))
def test_yaml_config(work: Workdir, doc: Any, raw: str | None) -> None:
    check_config(work, doc, raw)


@pytest.mark.slow
@SLOW
@given(doc=config_doc, raw=st.one_of(st.none(), st.none(), raw_yaml))
def test_yaml_config_slow(work: Workdir, doc: Any, raw: str | None) -> None:
    check_config(work, doc, raw)


# ----------------------------------------------------------------------------------------------
# Run directories (`mmctr predict --run`, `serve`, `bench --run`)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers import random_items
    from mmctr.config import resolve_run_config
    from mmctr.training.run_dir import build_model, save_run

    cfg = resolve_run_config("din", overrides={"model_params": {"embedding_dim": 4, "dnn_hidden": [8],
                                                                "attention_hidden": [4]}})  # fmt: skip
    items = random_items(6)
    out = tmp_path_factory.mktemp("run") / "run"
    return save_run(out, cfg, build_model(cfg, items), items, {"valid_auc": 0.5}, {"data": "x"})


RUN_FILES = ["config.yaml", "model.safetensors", "items.safetensors", "run.json", "metrics.json"]
run_damage = st.one_of(
    file_damage,
    st.tuples(st.just("delete")),
    st.tuples(st.just("text"), st.sampled_from(["", "[]", "{}", "model: lr", "model: din\ntrain: 3", "null", "{oops",
                                                 "model: din\nmodel_params: {embedding_dim: 0}"])),
    st.tuples(st.just("tensor"), st.sampled_from(["drop", "shape", "dtype", "extra", "nan"]), _index),
)  # fmt: skip


def _damage_tensors(path: Path, how: str, i: int) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    try:
        t = load_file(str(path))
    except SafetensorError:
        return  # damaged already by an earlier step
    if not t:
        return
    key = sorted(t)[i % len(t)]
    if how == "drop":
        del t[key]
    elif how == "shape":
        t[key] = torch.zeros(3, 7)
    elif how == "dtype":
        t[key] = t[key].to(torch.float16 if t[key].is_floating_point() else torch.float64)
    elif how == "extra":
        t["surprise"] = torch.zeros(2)
    elif how == "nan" and t[key].is_floating_point():
        t[key] = torch.full_like(t[key], float("nan"))
    save_file(t, str(path))


def check_run(work: Workdir, good_run: Path, damages: list[tuple[int, tuple]]) -> None:
    import shutil

    from mmctr.training.run_dir import load_run

    run = work.new() / "run"
    shutil.copytree(good_run, run)
    for which, how in damages:
        path = run / RUN_FILES[which % len(RUN_FILES)]
        if how[0] == "delete":
            path.unlink(missing_ok=True)
        elif how[0] == "text":
            path.write_text(how[1])
        elif how[0] == "tensor":
            if path.suffix == ".safetensors" and path.exists():
                _damage_tensors(path, how[1], how[2])
        else:
            damage(path, how)
    got = outcome("run directory", lambda: load_run(run), (MMCTRError,), str(run))
    if isinstance(got, MMCTRError):
        return
    cfg, model, facts = got
    assert isinstance(facts, dict) and not model.training
    for name, p in model.state_dict().items():
        assert torch.isfinite(p).all() or not p.is_floating_point(), name


@FAST
@given(damages=st.lists(st.tuples(_index, run_damage), min_size=1, max_size=2))
def test_run_directory(work: Workdir, good_run: Path, damages: list) -> None:
    check_run(work, good_run, damages)


@pytest.mark.slow
@SLOW
@given(damages=st.lists(st.tuples(_index, run_damage), min_size=1, max_size=4))
def test_run_directory_slow(work: Workdir, good_run: Path, damages: list) -> None:
    check_run(work, good_run, damages)


# ----------------------------------------------------------------------------------------------
# Submission zips and csvs (`mmctr score`)

N_TEST = 6
GOOD_PRED = "ID,Task2\n" + "".join(f"{i},{0.1 * i:.3f}\n" for i in range(N_TEST))
GOOD_TRUTH = "ID,label\n" + "".join(f"{i},{i % 2}\n" for i in range(N_TEST))
CSV_NASTY = [
    "nan",
    "inf",
    "-inf",
    "-1",
    "1e400",
    "",
    " ",
    "x",
    "0x10",
    "1,2",
    "9999999999999999999999",
    "3.5",
    "-0",
]
csv_mutation = st.one_of(
    st.tuples(st.just("field"), _index, st.integers(0, 1), st.sampled_from(CSV_NASTY)),
    st.tuples(st.just("header"), st.sampled_from(["ID,label", "id,Task2", "ID,Task2,extra", "ID;Task2", "", "ID,Task1&2",
                                                   "\ufeffID,Task2", "ID,Task3"])),
    st.tuples(st.just("dup_line"), _index),
    st.tuples(st.just("drop_line"), _index),
    st.tuples(st.just("raw"), st.sampled_from(["", ",", "1", "a,b,c", "\x00", "\r", "7,0.5"])),
)  # fmt: skip
zip_wrap = st.sampled_from(["csv", "zip", "zip", "zip-other-name", "zip-dotdot", "zip-subdir", "zip-two", "zip-encrypted",
                            "zip-stored-corrupt", "not-utf8"])  # fmt: skip


def mutate_csv(text: str, ops: list[tuple]) -> str:
    lines = text.splitlines()
    for op in ops:
        if op[0] == "field" and len(lines) > 1:
            r = 1 + op[1] % (len(lines) - 1)
            parts = lines[r].split(",")
            parts[op[2] % len(parts)] = op[3]
            lines[r] = ",".join(parts)
        elif op[0] == "header" and lines:
            lines[0] = op[1]
        elif op[0] == "dup_line" and lines:
            lines.append(lines[op[1] % len(lines)])
        elif op[0] == "drop_line" and lines:
            lines.pop(op[1] % len(lines))
        elif op[0] == "raw":
            lines.append(op[1])
    return "\n".join(lines) + "\n"


def write_pred(path: Path, text: str, wrap: str) -> Path:
    data = text.encode()
    if wrap == "csv":
        path = path.with_suffix(".csv")
        path.write_bytes(data)
        return path
    if wrap == "not-utf8":
        path.write_bytes(b"PK\x03\x04" + b"\xff" * 40)  # looks like a zip, is not one
        return path
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        name = {
            "zip-other-name": "pred.csv",
            "zip-dotdot": "../prediction.csv",
            "zip-subdir": "sub/prediction.csv",
        }
        zf.writestr(name.get(wrap, "prediction.csv"), data)
        if wrap == "zip-two":
            zf.writestr("../../evil.txt", b"x")
    if wrap == "zip-encrypted":  # set the "encrypted" flag bit in both headers
        raw = bytearray(path.read_bytes())
        for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            i = raw.find(sig)
            raw[i + off] |= 1
        path.write_bytes(bytes(raw))
    if wrap == "zip-stored-corrupt":  # flip a byte inside the compressed member: CRC mismatch
        raw = bytearray(path.read_bytes())
        raw[40] ^= 0xFF
        path.write_bytes(bytes(raw))
    return path


def check_submission(work: Workdir, pred_ops: list, truth_ops: list, wrap: str, how: tuple) -> None:
    from mmctr.submission import read_labels, score

    d = work.new()
    pred = write_pred(d / "submission.zip", mutate_csv(GOOD_PRED, pred_ops), wrap)
    damage(pred, how)
    truth = d / "test_labels.csv"
    truth.write_text(mutate_csv(GOOD_TRUTH, truth_ops))
    before = sorted(p.name for p in d.parent.iterdir())
    got = outcome("submission zip/csv + truth csv", lambda: score(pred, truth), (SubmissionError,), str(d))
    assert sorted(p.name for p in d.parent.iterdir()) == before  # nothing extracted anywhere
    if isinstance(got, MMCTRError):
        return
    y = read_labels(truth)
    assert got["rows"] == len(y) and 0.0 <= got["auc"] <= 1.0 and set(np.unique(y)) <= {0.0, 1.0}


@FAST
@given(pred_ops=st.lists(csv_mutation, max_size=3), truth_ops=st.lists(csv_mutation, max_size=1), wrap=zip_wrap,
       how=file_damage)  # fmt: skip
def test_submission(work: Workdir, pred_ops: list, truth_ops: list, wrap: str, how: tuple) -> None:
    check_submission(work, pred_ops, truth_ops, wrap, how)


@pytest.mark.slow
@SLOW
@given(pred_ops=st.lists(csv_mutation, max_size=6), truth_ops=st.lists(csv_mutation, max_size=3), wrap=zip_wrap,
       how=file_damage)  # fmt: skip
def test_submission_slow(work: Workdir, pred_ops: list, truth_ops: list, wrap: str, how: tuple) -> None:
    check_submission(work, pred_ops, truth_ops, wrap, how)


# ----------------------------------------------------------------------------------------------
# Images: covers for `mmctr embed` (decoded) and Track 1 page images (checked when read)


def _encoded(fmt: str, size: tuple[int, int] = (12, 9)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds almost none: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (  # noqa: E731
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


image_bytes = st.one_of(
    st.sampled_from(["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"]).map(_encoded),
    st.tuples(st.integers(1, 200_000), st.integers(1, 200_000)).map(lambda wh: png_header(*wh)),
    st.binary(max_size=64),
    st.just(b""),
    st.just(b"title,of,an,item\n"),
)
byte_damage = st.one_of(
    st.just(("none",)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 255)),
)


def _damaged_bytes(data: bytes, how: tuple) -> bytes:
    if how[0] == "truncate":
        return data[: int(len(data) * how[1])]
    if how[0] == "flip" and data:
        i = min(int(len(data) * how[1]), len(data) - 1)
        return data[:i] + bytes([how[2]]) + data[i + 1 :]
    return data


def check_image(data: bytes, how: tuple) -> None:
    from mmctr.encoders.image import ImageTransform, max_image_pixels
    from mmctr.retrieval.data.read_common import checked_image

    data = _damaged_bytes(data, how)
    transform = ImageTransform(size=16, resize=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    got = outcome("image (embed cover)", lambda: transform(data, "cover.jpg"), (DataError,), "cover.jpg")
    if not isinstance(got, MMCTRError):
        assert got.shape == (3, 16, 16) and np.isfinite(got).all()
    page = outcome("image (Track 1 page)", lambda: checked_image(data, Path("pages.parquet"), "image_binary", "row 0"),
                   (DataError,), "pages.parquet")  # fmt: skip
    if not isinstance(page, MMCTRError):
        with Image.open(io.BytesIO(page)) as im:
            assert im.size[0] * im.size[1] <= max_image_pixels()


@FAST
@given(data=image_bytes, how=byte_damage)
def test_image(data: bytes, how: tuple) -> None:
    check_image(data, how)


@pytest.mark.slow
@SLOW
@given(data=image_bytes, how=byte_damage)
def test_image_slow(data: bytes, how: tuple) -> None:
    check_image(data, how)


# ----------------------------------------------------------------------------------------------
# Every bad input class, one by one, with the error it gets (the table in docs/reliability.md)


def _split_case(ops: list, how: tuple = ("none",)) -> Callable[[Path], Any]:
    def run(d: Path) -> Any:
        from mmctr.data.reader import read_split

        path = write_parquet(d / "train.parquet", mutate(SPLIT, SPLIT_TYPES, ops))
        damage(path, how)
        return read_split(path, N_ITEMS, max_len=64)

    return run


def _info_case(ops: list, feature_ops: list | None = None) -> Callable[[Path], Any]:
    def run(d: Path) -> Any:
        from mmctr.data.reader import read_item_info

        path = write_parquet(d / "item_info.parquet", mutate(ITEM_INFO, ITEM_INFO_TYPES, ops))
        feature = write_parquet(
            d / "item_feature.parquet", mutate(ITEM_FEATURE, ITEM_FEATURE_TYPES, feature_ops or [])
        )
        return read_item_info(path, feature)

    return run


def _config_case(text: str | bytes) -> Callable[[Path], Any]:
    def run(d: Path) -> Any:
        from mmctr.config import resolve_run_config

        path = d / "my.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return resolve_run_config("din", path)

    return run


def _run_case(file: str, how: tuple) -> Callable[[Path], Any]:
    def run(d: Path) -> Any:
        import shutil

        from mmctr.training.run_dir import load_run

        shutil.copytree(_GOOD_RUN[0], d / "run")
        path = d / "run" / file
        if how[0] == "delete":
            path.unlink()
        elif how[0] == "text":
            path.write_text(how[1])
        elif how[0] == "tensor":
            _damage_tensors(path, how[1], how[2])
        else:
            damage(path, how)
        return load_run(d / "run")

    return run


def _score_case(
    pred: str | None = None, wrap: str = "zip", truth: str | None = None
) -> Callable[[Path], Any]:
    def run(d: Path) -> Any:
        from mmctr.submission import score

        p = write_pred(d / "submission.zip", pred if pred is not None else GOOD_PRED, wrap)
        t = d / "test_labels.csv"
        t.write_text(truth if truth is not None else GOOD_TRUTH)
        return score(p, t)

    return run


def _zip_raw(d: Path, method: int) -> Path:
    """A zip whose member claims compression `method` (99: AES, which zipfile cannot read)."""
    path = write_pred(d / "submission.zip", GOOD_PRED, "zip")
    raw = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = raw.find(sig)
        raw[i + off : i + off + 2] = struct.pack("<H", method)
    path.write_bytes(bytes(raw))
    return path


def _cover_case(data: bytes) -> Callable[[Path], Any]:
    def run(d: Path) -> Any:
        from mmctr.encoders.image import ImageTransform

        return ImageTransform(size=16, resize=16, mean=(0.5,) * 3, std=(0.5,) * 3)(data, d / "7.jpg")

    return run


def _questions_case(raw: bytes) -> Callable[[Path], Any]:
    def run(d: Path) -> Any:
        from mmctr.retrieval.data import formats as F
        from mmctr.retrieval.data import load

        write_parquet(d / F.MMDOCIR_PAGES, mutate(PAGES, PAGES_TYPES, []))
        (d / F.MMDOCIR_QUESTIONS).write_bytes(raw)
        return load(d)

    return run


def _pages_case(how: tuple) -> Callable[[Path], Any]:
    def run(d: Path) -> Any:
        from mmctr.retrieval.data import formats as F
        from mmctr.retrieval.data import load

        damage(write_parquet(d / F.MMDOCIR_PAGES, mutate(PAGES, PAGES_TYPES, [])), how)
        write_jsonl(d / F.MMDOCIR_QUESTIONS, QUESTIONS, [], ("none",))
        return load(d)

    return run


_GOOD_RUN: list[Path] = []
_Q = json.dumps(QUESTIONS[0]).encode() + b"\n"
_JPEG = _encoded("JPEG", (64, 48))

# class -> (what reads it, error class or None for "accepted", excerpt of the message)
BAD_INPUTS: dict[str, tuple[Callable[[Path], Any], type[MMCTRError] | None, str]] = {
    # MMCTR split parquets (train/valid/test.parquet)
    "split: missing column": (_split_case([("drop", 5)]), DataError, "column 'label': missing; expected columns"),
    "split: renamed column": (_split_case([("rename", 2)]), DataError, "column 'item_id': missing"),
    "split: extra column": (_split_case([("extra", 3)]), None, "accepted, ignored"),
    "split: wrong dtype": (_split_case([("retype", 2, "string")]), DataError, "column 'item_id': has type string; expected int"),
    "split: wrong list length": (_split_case([("list_len", 1, 0, 99)]), DataError,
                                 "row 0 has a list of length 99; every row must have exactly 100"),
    "split: NaN label": (_split_case([("cell", 5, 1, float("nan"))]), DataError, "row 1 holds NaN or infinite"),
    "split: inf label": (_split_case([("cell", 5, 1, float("inf"))]), DataError, "row 1 holds NaN or infinite"),
    "split: label not 0/1": (_split_case([("cell", 5, 2, 2.0)]), DataError, "row 2 holds 2.0; expected a click label 0 or 1"),
    "split: negative item id": (_split_case([("cell", 2, 0, -1)]), DataError,
                                "row 0 holds -1; expected an item id present in item_info (1..5)"),
    "split: out-of-range item id": (_split_case([("cell", 2, 3, 6)]), DataError, "row 3 holds 6; expected an item id"),
    "split: out-of-range history id": (_split_case([("list_elem", 1, 0, 99, 9)]), DataError,
                                       "row 0 position 99 holds item id 9"),
    "split: negative history id": (_split_case([("list_elem", 1, 0, 99, -3)]), DataError, "holds item id -3"),
    "split: right-padded history": (_split_case([("list_elem", 1, 0, 0, 1)]), DataError, "must be LEFT zero-padded"),
    "split: null value": (_split_case([("cell", 0, 1, None)]), DataError, "column 'user_id': has 1 null values"),
    "split: level out of range": (_split_case([("cell", 3, 0, 11)]), DataError, "row 0 holds 11; expected a level in 0..10"),
    "split: zero rows": (_split_case([("keep_rows", 0)]), None, "accepted: 0 rows"),
    "split: empty file (0 bytes)": (_split_case([], ("zero",)), DataError, "cannot be read as parquet"),
    "split: truncated file": (_split_case([], ("truncate", 0.6)), DataError, "cannot be read as parquet"),
    "split: damaged footer (non-UTF-8 name)": (_split_case([], ("flip", 0.375, 128)), DataError,
                                               "cannot be read as parquet"),
    "split: garbage bytes": (_split_case([], ("garbage", b"PAR1 no")), DataError, "cannot be read as parquet"),
    # item_info.parquet and item_feature.parquet
    "item_info: duplicated item ids": (_info_case([("dup_row", 1)]), DataError,
                                       "row 2 holds item_id 1; rows must be ordered so that row index == item_id"),
    "item_info: padding row not zero": (_info_case([("list_elem", 2, 0, 0, 1.0)]), DataError,
                                        "row 0 is the padding item and must be all zeros"),
    "item_info: NaN in embedding": (_info_case([("list_elem", 2, 3, 5, float("nan"))]), DataError,
                                    "row 3 (item_id 3) holds NaN or infinite values"),
    "item_info: wrong embedding length": (_info_case([("list_len", 2, 2, 64)]), DataError,
                                          "row 2 has a list of length 64; every row must have exactly 128"),
    "item_info: negative tag": (_info_case([("list_elem", 1, 2, 4, -2)]), DataError, "holds negative tag ids"),
    "item_info: only the padding row": (_info_case([("keep_rows", 1)]), DataError, "has 1 rows; expected padding row 0"),
    "item_feature: id out of range": (_info_case([], [("cell", 0, 0, 40)]), DataError, "ids must lie in 1..5"),
    "item_feature: wrong dtype": (_info_case([], [("cell", 0, 0, "x")]), DataError,
                                  "column 'item_id': has type string; expected int"),
    "item_feature: level out of range": (_info_case([], [("cell", 3, 0, -1)]), DataError, "values must lie in 0..10"),
    # Track 1 questions (the rest: tests/test_retrieval_data.py::test_bad_input_is_named)
    "MMDocIR questions: not UTF-8": (_questions_case(_Q + b"\xff\xfe{\n"), DataError, "line 2: not UTF-8 text"),
    "MMDocIR pages: damaged text (not UTF-8)": (_pages_case(("flip", 0.015625, 128)), DataError,
                                                "holds text that is not UTF-8"),
    "MMDocIR questions: empty file": (_questions_case(b""), None, "accepted: 0 questions"),
    # YAML configs
    "config: NaN learning rate": (_config_case("train:\n  lr: .nan\n"), ConfigError,
                                  "train.lr: nan is out of range; expected a finite number"),
    "config: zero batch size": (_config_case("train:\n  batch_size: 0\n"), ConfigError,
                                "train.batch_size: 0 is out of range; expected at least 1"),
    "config: max_len beyond the files' 100": (_config_case("train:\n  max_len: 101\n"), ConfigError,
                                              "train.max_len: 101 is out of range"),
    "config: negative width": (_config_case("model_params:\n  embedding_dim: -1\n"), ConfigError,
                               "embedding_dim: -1 is out of range; expected a size from 1 to"),
    "config: dropout 1.5": (_config_case("model_params:\n  net_dropout: 1.5\n"), ConfigError,
                            "a dropout probability in [0, 1)"),
    "config: not UTF-8": (_config_case(b"train: \xff\n"), ConfigError, "not UTF-8 text"),
    "config: not YAML": (_config_case("train: [\n"), ConfigError, "not valid YAML"),
    "config: top level not a mapping": (_config_case("- 1\n- 2\n"), ConfigError, "expected a mapping at the top level"),
    # run directories
    "run: truncated weights": (_run_case("model.safetensors", ("truncate", 0.5)), MMCTRError,
                               "model.safetensors: cannot be loaded (SafetensorError"),
    "run: weight missing": (_run_case("model.safetensors", ("tensor", "drop", 0)), MMCTRError,
                            "model.safetensors: cannot be loaded (RuntimeError: Error(s) in loading state_dict"),
    "run: weight of wrong shape": (_run_case("model.safetensors", ("tensor", "shape", 1)), MMCTRError,
                                   "model.safetensors: cannot be loaded (RuntimeError"),
    "run: NaN weights": (_run_case("model.safetensors", ("tensor", "nan", 2)), MMCTRError, "holds NaN or infinite values"),
    "run: item table of wrong shape": (_run_case("items.safetensors", ("tensor", "shape", 0)), MMCTRError,
                                       "items.safetensors: cannot be loaded (ValueError"),
    "run: config.yaml not YAML": (_run_case("config.yaml", ("text", "model: [")), MMCTRError,
                                  "config.yaml: cannot be loaded (ParserError"),
    "run: config.yaml of another model's keys": (_run_case("config.yaml", ("text", "model: din\nmodel_params: {k: 1}")),
                                                 MMCTRError, "unknown key 'k'"),
    "run: run.json not JSON": (_run_case("run.json", ("text", "{oops")), MMCTRError,
                               "run.json: cannot be loaded (JSONDecodeError"),
    "run: run.json not an object": (_run_case("run.json", ("text", "[]")), MMCTRError, "expected a JSON object"),
    "run: file missing": (_run_case("items.safetensors", ("delete",)), MMCTRError,
                          "not a run directory (items.safetensors missing)"),
    # submissions (the rest: tests/test_submission.py, tests/test_first_hour.py::test_score_names_natural_mistakes)
    "submission: encrypted zip": (_score_case(wrap="zip-encrypted"), SubmissionError, "submit an unencrypted zip"),
    "submission: corrupt zip member": (_score_case(wrap="zip-stored-corrupt"), SubmissionError, "damaged zip"),
    "submission: unsupported compression": (lambda d: __import__("mmctr.submission").submission.read_submission(
        _zip_raw(d, 99)), SubmissionError, "use deflate or no compression"),
    "submission: ID too large for an integer": (_score_case(GOOD_PRED + "99999999999999999999999,0.5\n"),
                                                SubmissionError, "is not 'integer,number'"),
    "submission: member outside the root (../)": (_score_case(wrap="zip-dotdot"), SubmissionError,
                                                  "the zip has no prediction.csv at its root"),
    "submission: not a zip though it starts like one": (_score_case(wrap="not-utf8"), SubmissionError, "is not a text file; --pred should be"),
    "truth: label not 0/1": (_score_case(truth=GOOD_TRUTH.replace("3,1", "3,nan")), SubmissionError,
                             "ID 3 has label nan; labels are 0 or 1"),
    # images (covers for embed; Track 1 pages use the same checks, tests/test_safety.py)
    "image: zero bytes": (_cover_case(b""), DataError, "7.jpg: empty (0 bytes)"),
    "image: not an image": (_cover_case(b"title,of,an,item\n"), DataError, "7.jpg: not a readable image"),
    "image: truncated JPEG": (_cover_case(_JPEG[: len(_JPEG) // 2]), DataError, "7.jpg: not a readable image (OSError: Truncated"),
    "image: PNG bytes named .jpg": (_cover_case(_encoded("PNG")), None, "accepted: decoded by content"),
    "image: huge dimensions (decompression bomb)": (_cover_case(png_header(12_000, 9_000)), DataError,
                                                    "12000x9000 pixels is more than 89,478,485; refused"),
    "image: huge dimensions beyond PIL's own limit": (_cover_case(png_header(100_000, 100_000)), DataError,
                                                      "7.jpg: refused: Image size (10000000000 pixels) exceeds limit"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_class(case: str, work: Workdir, good_run: Path) -> None:
    _GOOD_RUN[:] = [good_run]
    build, error, excerpt = BAD_INPUTS[case]
    d = work.new()
    if error is None:
        build(d)
        return
    with pytest.raises(error) as info:
        build(d)
    assert type(info.value) is not MMCTRError or error is MMCTRError
    assert excerpt in str(info.value), (case, str(info.value))
    assert str(d) in str(info.value) or case.startswith("image"), str(info.value)
