"""Write the generated world in the challenge's own file layout.

Files are byte-reproducible: schemas built from arrays (no pandas metadata), one codec, fixed
row-group sizes, rows in a fixed order, JPEGs at a fixed quality, nothing time-dependent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mmctr.retrieval.data import formats as F
from mmctr.retrieval.data.synth.docs import DocSpec, QuestionSpec
from mmctr.retrieval.data.synth.entities import Entity, PassageSpec, QuerySpec
from mmctr.retrieval.data.synth.pages import RenderedPage

COMPRESSION = "zstd"
PAGE_ROW_GROUP = 64  # small groups: a reader fetching one page image decodes 64, not 20k

PAGE_SCHEMA = pa.schema(
    [
        ("doc_name", pa.string()),
        ("passage_id", pa.string()),
        ("image_path", pa.string()),
        ("image_binary", pa.binary()),
        ("ocr_text", pa.string()),
        ("vlm_text", pa.string()),
    ]
)
QUERY_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("question", pa.string()),
        ("instruction", pa.string()),
        ("img_path", pa.string()),
        ("pos_item_ids", pa.list_(pa.string())),
    ]
)
PASSAGE_SCHEMA = pa.schema(
    [("passage_id", pa.string()), ("passage_content", pa.string()), ("page_screenshot", pa.string())]
)
assert tuple(PAGE_SCHEMA.names) == F.PAGE_COLUMNS
assert tuple(QUERY_SCHEMA.names) == F.QUERY_COLUMNS
assert tuple(PASSAGE_SCHEMA.names) == F.PASSAGE_COLUMNS


def page_image_path(doc: DocSpec, page: int) -> str:
    return f"page_images/{doc.name.rsplit('.', 1)[0]}_{page}.jpg"


def write_pages(path: Path, docs: list[DocSpec], rendered: Iterable[list[RenderedPage]]) -> int:
    """The pages parquet, one document at a time in document order (rendered in that order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with pq.ParquetWriter(path, PAGE_SCHEMA, compression=COMPRESSION) as writer:
        for doc, pages in zip(docs, rendered, strict=True):
            table = pa.Table.from_arrays(
                [
                    pa.array([doc.name] * len(pages), pa.string()),
                    pa.array([str(i) for i in range(len(pages))], pa.string()),
                    pa.array([page_image_path(doc, i) for i in range(len(pages))], pa.string()),
                    pa.array([p.jpeg for p in pages], pa.binary()),
                    pa.array([p.ocr_text for p in pages], pa.string()),
                    pa.array([p.vlm_text for p in pages], pa.string()),
                ],
                schema=PAGE_SCHEMA,
            )
            writer.write_table(table, row_group_size=PAGE_ROW_GROUP)
            n += len(pages)
    return n


def doc_question_id(i: int) -> str:
    return str(10_000 + i)


def write_questions(path: Path, docs: list[DocSpec], questions: list[QuestionSpec], with_gold: bool) -> None:
    """MMDocIR_gt_remove.jsonl; the train split keeps the gold pages in `passage_id`."""
    with open(path, "w", encoding="utf-8") as f:
        for i, q in enumerate(questions):
            doc = docs[q.doc]
            row = {
                "question_id": doc_question_id(i),
                "question": q.text,
                "doc_name": doc.name,
                "domain": doc.domain,
                "num_of_pages": len(doc.pages),
                "passage_id": [str(p) for p in q.gold] if with_gold else [],
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_m2kr(
    root: Path, entities: list[Entity], passages: list[PassageSpec], queries: list[QuerySpec], with_gold: bool
) -> None:
    """The challenge's query and passage parquets (images are written by the render workers)."""
    qpath, ppath = root / F.M2KR_QUERIES, root / F.M2KR_PASSAGES
    qpath.parent.mkdir(parents=True, exist_ok=True)
    ppath.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_arrays(
        [
            pa.array([q.question_id for q in queries], pa.string()),
            # Image-only rows carry a null question, as pandas users of the real file test with isna.
            pa.array([q.question or None for q in queries], pa.string()),
            pa.array([q.instruction for q in queries], pa.string()),
            pa.array([q.img_path for q in queries], pa.string()),
            pa.array(
                [list(entities[q.entity].passages) if with_gold else [] for q in queries],
                pa.list_(pa.string()),
            ),
        ],
        schema=QUERY_SCHEMA,
    )
    pq.write_table(table, qpath, compression=COMPRESSION)
    table = pa.Table.from_arrays(
        [
            pa.array([p.passage_id for p in passages], pa.string()),
            pa.array([p.text for p in passages], pa.string()),
            pa.array([entities[p.entity].screenshot for p in passages], pa.string()),
        ],
        schema=PASSAGE_SCHEMA,
    )
    pq.write_table(table, ppath, compression=COMPRESSION)
