"""Read ViDoRe (the draft rules' sub-task 1) into a DocSet whose one pseudo-document holds the
whole page pool.

QA layout (v1): parquet shards with `query`, `image` (the HF Image struct of bytes and path),
`image_filename`, ...; a page is an `image_filename`, queries are deduplicated by text as
vidore-benchmark does, and a query's gold is the `image_filename` of every row it came from.
BEIR layout (v1 `_beir`, v2): `corpus/` (`corpus-id`, `image`), `queries/` (`query-id`, `query`),
`qrels/` (`query-id`, `corpus-id`, `score`); gold is every corpus id with a positive score, and the
graded scores are kept for nDCG.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import pyarrow as pa

from mmctr.errors import DataError
from mmctr.retrieval.data import formats as F
from mmctr.retrieval.data.read_common import (
    LazyColumn,
    checked_image,
    first_duplicate,
    ids,
    is_bytes,
    open_parquet,
    read_image_file,
    read_table,
    require_columns,
    safe_relpath,
    texts,
)
from mmctr.retrieval.data.types import DocPages, DocQuestion, DocSet

_DESCRIPTION_COLUMNS = ("text_description", "markdown")  # a page's text, when the set ships one


def shards(folder: Path, split: str = "test") -> list[Path]:
    """The split's parquet shards in folder (or folder/data), else every parquet there."""
    for d in (folder, folder / "data"):
        files = sorted(d.glob(f"{split}-*.parquet")) or sorted(d.glob(f"{split}*.parquet"))
        if files:
            return files
    for d in (folder, folder / "data"):
        files = sorted(d.glob("*.parquet"))
        if files:
            return files
    return []


class _Images:
    """Page images across shards: global row -> (shard, row) -> bytes, read lazily."""

    def __init__(self, files: list[Path], column: str, counts: list[int]):
        self.files, self.column = files, column
        self.cols: list[LazyColumn | None] = [None] * len(files)
        self.starts = [0]
        for c in counts:
            self.starts.append(self.starts[-1] + c)
        t = open_parquet(files[0]).schema_arrow.field(column).type
        self.struct = pa.types.is_struct(t)
        if not (self.struct or is_bytes(t)):
            raise DataError(
                files[0], column, f"has type {t}; expected an image (struct of bytes and path, or binary)"
            )

    def __call__(self, row: int, where: str) -> bytes:
        s = bisect.bisect_right(self.starts, row) - 1
        if self.cols[s] is None:
            self.cols[s] = LazyColumn(self.files[s], self.column)
        v = self.cols[s](row - self.starts[s])  # type: ignore[misc]
        file = self.files[s]
        if self.struct:
            data, path = (v or {}).get("bytes"), (v or {}).get("path")
            if data is None and path:
                rel = safe_relpath(path, file, self.column, where)
                return read_image_file(file.parent / rel, file, self.column, where)
        else:
            data = v
        return checked_image(data, file, self.column, where)


class _Pick:
    """DocPages.image: page i is row rows[i] of the shards (picklable, unlike a lambda)."""

    def __init__(self, images: _Images, rows: list[int], names: list[str], id_column: str):
        self.images, self.rows, self.names, self.id_column = images, rows, names, id_column

    def __call__(self, i: int) -> bytes:
        r = self.rows[i]
        return self.images(r, f"row {r} ({self.id_column} {self.names[i]!r})")


def _table(
    files: list[Path], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> tuple[pa.Table, list[int]]:
    tables = []
    for f in files:
        pf = open_parquet(f)
        names = pf.schema_arrow.names
        require_columns(f, names, required)
        tables.append(read_table(f, pf, list(required) + [c for c in optional if c in names]))
    counts = [t.num_rows for t in tables]
    try:
        return pa.concat_tables(tables, promote_options="permissive"), counts
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise DataError(files[0].parent, None, f"shards have different columns or types: {err}") from err


def _description(file: Path, table: pa.Table) -> list[str]:
    for col in _DESCRIPTION_COLUMNS:
        if col in table.column_names:
            return texts(file, table, col)
    return [""] * table.num_rows


def read_vidore_qa(files: list[Path], name: str) -> tuple[DocSet, dict]:
    table, counts = _table(files, F.VIDORE_QA_COLUMNS, _DESCRIPTION_COLUMNS)
    file = files[0]
    query = texts(file, table, "query")
    fname = ids(file, table, "image_filename")
    desc = _description(file, table)
    images = _Images(files, "image", counts)
    first_row: dict[str, int] = {}
    for r, f in enumerate(fname):
        first_row.setdefault(f, r)
    pool = list(first_row)  # pages in order of first appearance
    rows = [first_row[f] for f in pool]

    questions: list[DocQuestion] = []
    gold: dict[str, list[str]] = {}
    by_text: dict[str, str] = {}
    for r, q in enumerate(query):
        if not q.strip():
            continue  # a page with no question: part of the pool only
        qid = by_text.get(q)
        if qid is None:
            qid = by_text[q] = str(len(questions))
            questions.append(DocQuestion(qid, q, name, ""))
            gold[qid] = []
        if fname[r] not in gold[qid]:
            gold[qid].append(fname[r])
    pages = DocPages(
        doc_name=[name] * len(pool),
        page_id=pool,
        ocr_text=[""] * len(pool),
        vlm_text=[desc[r] for r in rows],
        image=_Pick(images, rows, pool, "image_filename"),
    )
    qrels = {q: {p: 1 for p in g} for q, g in gold.items()}
    return DocSet(questions=questions, pages=pages, source=str(file.parent), gold=gold), {
        "vidore_qrels": qrels
    }


def read_vidore_beir(folder: Path, name: str, split: str = "test") -> tuple[DocSet, dict]:
    parts = {}
    for d in F.VIDORE_BEIR_DIRS:
        files = shards(folder / d, split)
        if not files:
            raise DataError(
                folder / d, None, f"no parquet files; a ViDoRe BEIR folder holds {list(F.VIDORE_BEIR_DIRS)}"
            )
        parts[d] = files
    corpus, counts = _table(parts["corpus"], ("corpus-id", "image"), _DESCRIPTION_COLUMNS)
    cfile = parts["corpus"][0]
    cid = ids(cfile, corpus, "corpus-id")
    dup = first_duplicate(cid)
    if dup:
        raise DataError(
            cfile, "corpus-id", f"row {dup[0]} repeats corpus-id {cid[dup[0]]!r} (first at row {dup[1]})"
        )
    desc = _description(cfile, corpus)
    images = _Images(parts["corpus"], "image", counts)

    qtable, _ = _table(parts["queries"], ("query-id", "query"))
    qfile = parts["queries"][0]
    qid = ids(qfile, qtable, "query-id")
    dup = first_duplicate(qid)
    if dup:
        raise DataError(
            qfile, "query-id", f"row {dup[0]} repeats query-id {qid[dup[0]]!r} (first at row {dup[1]})"
        )
    qtext = texts(qfile, qtable, "query", required=True)

    rtable, _ = _table(parts["qrels"], ("query-id", "corpus-id", "score"))
    rfile = parts["qrels"][0]
    r_q, r_c = ids(rfile, rtable, "query-id"), ids(rfile, rtable, "corpus-id")
    score_col = rtable.column("score")
    if not (pa.types.is_integer(score_col.type) or pa.types.is_floating(score_col.type)):
        raise DataError(rfile, "score", f"has type {score_col.type}; expected a number")
    scores = score_col.to_pylist()
    known_q, known_c = set(qid), set(cid)
    qrels: dict[str, dict[str, float]] = {}
    for r, (q, c, s) in enumerate(zip(r_q, r_c, scores, strict=True)):
        if q not in known_q:
            raise DataError(rfile, "query-id", f"row {r}: query {q!r} is not in {qfile.name}")
        if c not in known_c:
            raise DataError(rfile, "corpus-id", f"row {r}: page {c!r} is not in {cfile.name}")
        if s is None:
            raise DataError(rfile, "score", f"row {r} is null")
        qrels.setdefault(q, {})[c] = s
    gold = {q: [c for c, s in rel.items() if s > 0] for q, rel in qrels.items()}
    gold = {q: g for q, g in gold.items() if g}
    pages = DocPages(
        doc_name=[name] * len(cid),
        page_id=cid,
        ocr_text=[""] * len(cid),
        vlm_text=desc,
        image=_Pick(images, list(range(len(cid))), cid, "corpus-id"),
    )
    questions = [DocQuestion(q, t, name, "") for q, t in zip(qid, qtext, strict=True)]
    return DocSet(questions=questions, pages=pages, source=str(folder), gold=gold), {"vidore_qrels": qrels}


def looks_like_qa(files: list[Path]) -> bool:
    return bool(files) and set(F.VIDORE_QA_COLUMNS) <= set(open_parquet(files[0]).schema_arrow.names)
