"""Read an MMDocIR folder: the challenge pair (`MMDocIR_gt_remove.jsonl` +
`MMDocIR_doc_passages.parquet`), or the evaluation release (`MMDocIR_annotations.jsonl` +
`MMDocIR_pages.parquet`), into a DocSet.

Gold comes only from the files: non-empty `passage_id` lists in the questions file (the
generator's train split) or `MMDocIR_annotations.jsonl` beside it (matched by document and
question text). Page images stay in the parquet and are read one row group at a time.
"""

from __future__ import annotations

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
    read_jsonl,
    read_table,
    require_columns,
    safe_relpath,
    struct_bytes,
    texts,
)
from mmctr.retrieval.data.types import DocPages, DocQuestion, DocSet

_KIND_OF_TYPE = {"chart": "chart", "table": "table", "figure": "figure", "image": "figure"}


def pages_file(folder: Path) -> Path:
    for name in (F.MMDOCIR_PAGES, F.MMDOCIR_EVAL_PAGES):
        if (folder / name).exists():
            return folder / name
    return folder / F.MMDOCIR_PAGES


def read_pages(path: Path) -> DocPages:
    pf = open_parquet(path)
    names = pf.schema_arrow.names
    require_columns(path, names, ("doc_name", "passage_id", "ocr_text", "vlm_text"))
    if "image_binary" not in names and "image_path" not in names:
        raise DataError(path, "image_binary", f"missing (and no image_path either); found {sorted(names)}")
    cols = ["doc_name", "passage_id", "ocr_text", "vlm_text"] + (
        ["image_path"] if "image_path" in names else []
    )
    table = read_table(path, pf, cols)
    doc_name, page_id = ids(path, table, "doc_name"), ids(path, table, "passage_id")
    ocr, vlm = texts(path, table, "ocr_text"), texts(path, table, "vlm_text")
    image_path = texts(path, table, "image_path") if "image_path" in names else [""] * len(doc_name)
    dup = first_duplicate(list(zip(doc_name, page_id, strict=True)))
    if dup:
        r, first = dup
        raise DataError(
            path,
            "passage_id",
            f"row {r} repeats page {page_id[r]!r} of document {doc_name[r]!r} (first at row {first})",
        )

    binary: LazyColumn | None = None
    if "image_binary" in names:
        t = pf.schema_arrow.field("image_binary").type
        if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0:  # the HF hub's Image feature
            binary = LazyColumn(path, "image_binary", pick=struct_bytes)
        elif is_bytes(t):
            binary = LazyColumn(path, "image_binary")
        elif not pa.types.is_null(t):
            raise DataError(path, "image_binary", f"has type {t}; expected binary (JPEG bytes)")
    # Paths are checked when the table is read, not only when an image is asked for.
    for i, p in enumerate(image_path):
        if p:
            safe_relpath(p, path, "image_path", f"row {i}")
    image = _PageImages(path, binary, doc_name, page_id, image_path)
    return DocPages(doc_name=doc_name, page_id=page_id, ocr_text=ocr, vlm_text=vlm, image=image)


class _PageImages:
    """DocPages.image for a pages parquet: the row's JPEG bytes (or its image_path file), checked."""

    def __init__(
        self,
        path: Path,
        binary: LazyColumn | None,
        doc_name: list[str],
        page_id: list[str],
        image_path: list[str],
    ):
        self.path, self.binary = path, binary
        self.doc_name, self.page_id, self.image_path = doc_name, page_id, image_path

    def __call__(self, i: int) -> bytes:
        where = f"row {i} (document {self.doc_name[i]!r}, page {self.page_id[i]})"
        data = self.binary(i) if self.binary is not None else None
        if data is not None:
            return checked_image(data, self.path, "image_binary", where)
        if self.image_path[i]:
            rel = safe_relpath(self.image_path[i], self.path, "image_path", where)
            return read_image_file(self.path.parent / rel, self.path, "image_path", where)
        raise DataError(self.path, "image_binary", f"{where}: no image bytes and no image_path")


def _str_field(path: Path, n: int, obj: dict, key: str, required: bool = True) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise DataError(path, key, f"line {n}: missing")
        return ""
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise DataError(path, key, f"line {n}: expected a string, found {type(v).__name__}")
    return str(v)


def read_annotations(path: Path) -> dict[tuple[str, str], tuple[list[str], str]]:
    """(doc_name, question text) -> (gold page ids, kind) from MMDocIR_annotations.jsonl."""
    out: dict[tuple[str, str], tuple[list[str], str]] = {}
    for n, obj in read_jsonl(path):
        doc = _str_field(path, n, obj, "doc_name")
        qs = obj.get("questions")
        if not isinstance(qs, list):
            raise DataError(path, "questions", f"line {n}: expected a list of question objects")
        for k, q in enumerate(qs):
            if not isinstance(q, dict) or "Q" not in q or not isinstance(q.get("page_id"), list):
                raise DataError(
                    path, "questions", f"line {n}, question {k}: expected an object with Q and page_id"
                )
            kind_text = str(q.get("type", "")).lower()
            kind = next((v for k2, v in _KIND_OF_TYPE.items() if k2 in kind_text), "text")
            out[(doc, str(q["Q"]).strip())] = ([str(p) for p in q["page_id"]], kind)
    return out


def read_mmdocir(folder: Path) -> DocSet:
    pages_path = pages_file(folder)
    questions_path = folder / F.MMDOCIR_QUESTIONS
    ann_path = folder / F.MMDOCIR_ANNOTATIONS
    if not pages_path.exists():
        raise DataError(
            pages_path,
            None,
            f"file not found; an MMDocIR folder holds {F.MMDOCIR_PAGES} and {F.MMDOCIR_QUESTIONS}",
        )
    if not questions_path.exists() and not ann_path.exists():
        raise DataError(
            questions_path, None, f"file not found (nor {F.MMDOCIR_ANNOTATIONS}); the questions are needed"
        )
    pages = read_pages(pages_path)
    page_ids: dict[str, set[str]] = {}
    for d, p in zip(pages.doc_name, pages.page_id, strict=True):
        page_ids.setdefault(d, set()).add(p)
    annotations = read_annotations(ann_path) if ann_path.exists() else {}

    questions: list[DocQuestion] = []
    gold: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    if questions_path.exists():
        src = questions_path
        seen: dict[str, int] = {}
        for n, obj in read_jsonl(questions_path):
            qid = _str_field(questions_path, n, obj, "question_id")
            text = _str_field(questions_path, n, obj, "question")
            doc = _str_field(questions_path, n, obj, "doc_name")
            domain = _str_field(questions_path, n, obj, "domain", required=False)
            if qid in seen:
                raise DataError(
                    questions_path, "question_id", f"line {n}: question_id {qid} repeats line {seen[qid]}"
                )
            seen[qid] = n
            if doc not in page_ids:
                raise DataError(
                    questions_path,
                    "doc_name",
                    f"line {n} (question_id {qid}): document {doc!r} has no pages in {pages_path.name}",
                )
            listed = obj.get("passage_id") or []
            if not isinstance(listed, list):
                raise DataError(questions_path, "passage_id", f"line {n}: expected a list of page ids")
            g = [str(p) for p in listed]
            if not g and (doc, text.strip()) in annotations:
                g, kinds[qid] = annotations[(doc, text.strip())]
            for p in g:
                if p not in page_ids[doc]:
                    raise DataError(
                        questions_path,
                        "passage_id",
                        f"line {n} (question_id {qid}): page {p} is not a page of {doc!r}",
                    )
            if g:
                gold[qid] = g
            questions.append(DocQuestion(qid, text, doc, domain))
    else:  # the evaluation release: questions and gold both from the annotations, numbered as the challenge did
        src = ann_path
        for (doc, text), (g, kind) in annotations.items():
            qid = str(10_000 + len(questions))
            if doc not in page_ids:
                raise DataError(ann_path, "doc_name", f"document {doc!r} has no pages in {pages_path.name}")
            questions.append(DocQuestion(qid, text, doc, ""))
            gold[qid], kinds[qid] = g, kind
    return DocSet(questions=questions, pages=pages, source=str(src), gold=gold or None, kind=kinds)
