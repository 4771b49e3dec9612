"""Read M2KR into a PassageSet: the challenge's query and passage parquets with their image
folders, or a PreFLMR sub-set (`<NAME>_data/` + `<NAME>_passages/`).

Every image path is checked when the files are read: absolute paths and paths climbing out of the
folder are refused, and a missing file is named with its row. Gold is read from `pos_item_ids` when
the rows carry it (PreFLMR's splits, the generator's train split); the challenge's test rows do not.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from mmctr.errors import DataError
from mmctr.retrieval.data import formats as F
from mmctr.retrieval.data.read_common import (
    check_inside,
    first_duplicate,
    id_lists,
    ids,
    open_parquet,
    read_table,
    require_columns,
    safe_relpath,
    texts,
)
from mmctr.retrieval.data.types import ImageQuery, Passages, PassageSet

_WIT_LIKE = ("WIT", "IGLUE", "CC")


def _kinds(question: list[str], instruction: list[str], subset: str = "") -> list[str]:
    """The real challenge file's kinds by row range; elsewhere from the rows themselves."""
    n = len(question)
    if not subset and n == F.M2KR_REAL_ROWS:
        a, b, c = F.M2KR_KIND_STARTS
        return ["image"] * (b - a) + ["image_question"] * (c - b) + ["wit"] * (n - c)
    out = []
    for q, ins in zip(question, instruction, strict=True):
        if q.strip():
            out.append("image_question")
        elif subset.upper().startswith(_WIT_LIKE) or (not subset and "person" not in ins.lower()):
            out.append("wit")
        else:
            out.append("image")
    return out


def _resolve_images(
    file: Path, column: str, rels: list[str], row_ids: list[str], bases: list[Path], what: str
) -> list[Path]:
    """Each relative path under the first base folder that holds row 0's image; a missing file is an
    error naming its row."""
    safe = [safe_relpath(r, file, column, f"row {i} ({what} {row_ids[i]})") for i, r in enumerate(rels)]
    if not safe:
        return []
    base = next((b for b in bases if (b / safe[0]).is_file()), None)
    if base is None:
        tried = ", ".join(str(b) for b in bases)
        raise DataError(
            file, column, f"row 0 ({what} {row_ids[0]}): image {safe[0]!r} not found under {tried}"
        )
    paths = [base / r for r in safe]
    for i, p in enumerate(paths):
        check_inside(p, base, file, column, f"row {i} ({what} {row_ids[i]})")
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        i = missing[0]
        raise DataError(
            file,
            column,
            f"row {i} ({what} {row_ids[i]}): image file {paths[i]} not found ({len(missing)} of {len(paths)} missing)",
        )
    return paths


def _read(
    paths: list[Path], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> tuple[Path, pa.Table]:
    """One table from one or more shards (all with the required columns)."""
    tables = []
    for path in paths:
        pf = open_parquet(path)
        names = pf.schema_arrow.names
        require_columns(path, names, required)
        tables.append(read_table(path, pf, list(required) + [c for c in optional if c in names]))
    try:
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise DataError(paths[0].parent, None, f"shards have different columns or types: {err}") from err
    return paths[0], table


def _passages(path: Path, table: pa.Table, screenshot_bases: list[Path] | None) -> Passages:
    pid = ids(path, table, "passage_id")
    dup = first_duplicate(pid)
    if dup:
        raise DataError(
            path, "passage_id", f"row {dup[0]} repeats passage {pid[dup[0]]!r} (first at row {dup[1]})"
        )
    text = texts(path, table, "passage_content")
    shots: list[Path | None] = [None] * len(pid)
    if screenshot_bases is not None:
        rels = texts(path, table, "page_screenshot", required=True)
        shots = list(_resolve_images(path, "page_screenshot", rels, pid, screenshot_bases, "passage"))
    return Passages(passage_id=pid, text=text, screenshot=shots)


def _queries(
    path: Path, table: pa.Table, bases: list[Path], subset: str, passage_ids: set[str]
) -> tuple[list[ImageQuery], dict[str, list[str]]]:
    qid = ids(path, table, "question_id")
    dup = first_duplicate(qid)
    if dup:
        raise DataError(
            path, "question_id", f"row {dup[0]} repeats question_id {qid[dup[0]]!r} (first at row {dup[1]})"
        )
    question = texts(path, table, "question")
    instruction = (
        texts(path, table, "instruction") if "instruction" in table.column_names else [""] * len(qid)
    )
    images = _resolve_images(
        path, "img_path", texts(path, table, "img_path", required=True), qid, bases, "question_id"
    )
    gold: dict[str, list[str]] = {}
    if "pos_item_ids" in table.column_names:
        for r, g in enumerate(id_lists(path, table, "pos_item_ids")):
            unknown = [p for p in g if p not in passage_ids]
            if unknown:
                raise DataError(
                    path,
                    "pos_item_ids",
                    f"row {r} (question_id {qid[r]}): passage {unknown[0]!r} is not in the passage file",
                )
            if g:
                gold[qid[r]] = g
    kinds = _kinds(question, instruction, subset)
    queries = [
        ImageQuery(question_id=q, question=t, instruction=ins, image_path=img, kind=k)
        for q, t, ins, img, k in zip(qid, question, instruction, images, kinds, strict=True)
    ]
    return queries, gold


def read_m2kr_challenge(folder: Path) -> PassageSet:
    qpath, ppath = folder / F.M2KR_QUERIES, folder / F.M2KR_PASSAGES
    for p in (qpath, ppath):
        if not p.exists():
            raise DataError(
                p,
                None,
                "file not found; an M2KR-Challenge folder holds challenge_data/ and challenge_passage/",
            )
    _, ptable = _read([ppath], ("passage_id", "passage_content", "page_screenshot"))
    passages = _passages(ppath, ptable, [folder / d for d in F.M2KR_SCREENSHOT_DIRS])
    _, qtable = _read([qpath], ("question_id", "question", "instruction", "img_path"), ("pos_item_ids",))
    queries, gold = _queries(
        qpath, qtable, [folder / d for d in F.M2KR_QUERY_IMAGE_DIRS], "", set(passages.passage_id)
    )
    return PassageSet(queries=queries, passages=passages, source=str(folder), gold=gold or None)


def preflmr_subsets(folder: Path) -> list[str]:
    """Names with both `<NAME>_data/` and `<NAME>_passages/` folders."""
    if not folder.is_dir():
        return []
    return sorted(
        d.name[: -len("_data")]
        for d in folder.iterdir()
        if d.is_dir()
        and d.name.endswith("_data")
        and (folder / (d.name[: -len("_data")] + "_passages")).is_dir()
    )


def read_preflmr(
    folder: Path, subset: str | None = None, split: str = "test", image_root: Path | None = None
) -> PassageSet:
    names = preflmr_subsets(folder)
    if subset is None:
        if len(names) != 1:
            raise DataError(
                folder, None, f"holds {len(names)} M2KR sub-sets {names}; choose one (subset=...)"
            )
        subset = names[0]
    if subset not in names:
        raise DataError(folder / f"{subset}_data", None, f"not found; sub-sets here: {names}")
    data_dir, psg_dir = folder / f"{subset}_data", folder / f"{subset}_passages"
    data_files = sorted(data_dir.glob(f"{split}-*.parquet"))
    psg_files = sorted(psg_dir.glob(f"{split}_passages-*.parquet"))
    if not data_files:
        have = sorted({p.name.split("-")[0] for p in data_dir.glob("*.parquet")})
        raise DataError(
            data_dir / f"{split}-00000-of-00001.parquet", None, f"file not found; splits here: {have}"
        )
    if not psg_files:
        have = sorted({p.name.split("-")[0] for p in psg_dir.glob("*.parquet")})
        raise DataError(
            psg_dir / f"{split}_passages-00000-of-00001.parquet", None, f"file not found; here: {have}"
        )
    ppath, ptable = _read(psg_files, ("passage_id", "passage_content"))
    passages = _passages(ppath, ptable, None)
    qpath, qtable = _read(
        data_files, ("question_id", "question", "img_path", "pos_item_ids"), ("instruction",)
    )
    bases = [Path(image_root)] if image_root is not None else [folder, folder / "images", folder / subset]
    queries, gold = _queries(qpath, qtable, bases, subset, set(passages.passage_id))
    return PassageSet(queries=queries, passages=passages, source=str(data_dir), gold=gold or None)
