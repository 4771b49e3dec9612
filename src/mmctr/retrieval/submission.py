"""Track 1's submission: one CSV for both tasks, header `question_id,passage_id`, one row per
question, the `passage_id` cell a JSON list of ids as strings, best first, e.g.
`10003,"[""12"",""3"",""40"",""7"",""8""]"` (the cell is CSV-quoted because it holds commas).
The final rules take 5 ids per question, the draft 10.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmctr.errors import SubmissionError
from mmctr.outputs import OutputKind, move_into_place, temp_beside
from mmctr.retrieval.metrics import RuleSet, TruthLike, first_occurrences, get_rules

HEADER = "question_id,passage_id"
# How many ids an error message lists before "...".
SHOW = 5


def _is_submission_csv(path: Path) -> bool:
    """An existing file is an earlier submission when its first line is exactly our header."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        first = f.readline(len(HEADER) + 4)
    return first.rstrip(b"\r\n") == HEADER.encode()


SUBMISSION_CSV = OutputKind("submission CSV from `mmctr retrieval predict`", _is_submission_csv, is_dir=False)


def _qid_key(qid: str) -> tuple[int, int, str]:
    # Numeric ids in numeric order (M2KR "0".."6414", then MMDocIR "10000"..), others after.
    return (0, int(qid), "") if qid.isdigit() else (1, 0, qid)


def _show(ids: Sequence[str]) -> str:
    head = ", ".join(repr(i) for i in ids[:SHOW])
    return head + (", ..." if len(ids) > SHOW else "")


def submission_row(qid: str, ranking: Sequence[str], submit_k: int) -> list[str]:
    """`ranking` as the challenge wants it: each id once, the first `submit_k`, and a short list
    padded by repeating its top id (as teams did; the metrics count a repeat once)."""
    bad = [r for r in ranking if not isinstance(r, str)]
    if bad:
        raise SubmissionError(
            f"question {qid!r}: ids must be strings; got {bad[0]!r} ({type(bad[0]).__name__})"
        )
    ids = first_occurrences(ranking)[:submit_k]
    if not ids:
        raise SubmissionError(f"question {qid!r}: empty ranking; the submission needs at least one id")
    return ids + [ids[0]] * (submit_k - len(ids))


def format_submission(ranked: Mapping[str, Sequence[str]], rules: str | RuleSet = "final") -> str:
    """The CSV text, rows in question-id order."""
    rs = get_rules(rules)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER.split(","))
    for qid in sorted(ranked, key=_qid_key):
        if not isinstance(qid, str) or not qid:
            raise SubmissionError(f"question id {qid!r}: must be a non-empty string")
        row = submission_row(qid, ranked[qid], rs.submit_k)
        w.writerow([qid, json.dumps(row, separators=(",", ":"))])
    return buf.getvalue()


def write_submission(
    ranked: Mapping[str, Sequence[str]],
    out: Path,
    rules: str | RuleSet = "final",
    overwrite: bool = False,
) -> Path:
    """Write the submission CSV for `ranked` (question id -> ids, best first) to `out`, through a
    temporary file renamed into place. An existing `out` is replaced only with `overwrite` and only
    if it is itself a submission CSV."""
    out = Path(out)
    text = format_submission(ranked, rules)  # every error raised before anything is written
    tmp = temp_beside(out)
    try:
        tmp.write_text(text)
        move_into_place(tmp, out, SUBMISSION_CSV, overwrite)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def read_submission(path: Path, rules: str | RuleSet = "final") -> dict[str, list[str]]:
    """question id -> its ids, in file order, from a submission CSV, checked against the format:
    the header, one JSON list of exactly `submit_k` string ids per row, each question once."""
    rs = get_rules(rules)
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM left by spreadsheet programs
    except UnicodeDecodeError as err:
        raise SubmissionError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise SubmissionError(f"{path}: empty file; expected the header {HEADER!r}")
    if header != HEADER.split(","):
        raise SubmissionError(f"{path}, line 1: header is {','.join(header)!r}; expected {HEADER!r}")
    other = "draft" if rs.name == "final" else "final"
    out: dict[str, list[str]] = {}
    line_of: dict[str, int] = {}
    next_line = reader.line_num + 1
    for row in reader:
        # A quoted cell may span lines: a row starts one after where the previous one ended.
        line, next_line = next_line, reader.line_num + 1
        where = f"{path}, line {line}"
        if not row or row == [""]:
            continue  # blank line
        if len(row) != 2:
            raise SubmissionError(
                f"{where}: {len(row)} fields; expected 2 (question_id, passage_id) — "
                "is the JSON list CSV-quoted?"
            )
        qid, cell = row[0].strip(), row[1]
        if not qid:
            raise SubmissionError(f"{where}, column 'question_id': empty")
        if qid in out:
            raise SubmissionError(
                f"{where}, column 'question_id': {qid!r} already appeared on line {line_of[qid]}; "
                "each question takes one row"
            )
        try:
            ids = json.loads(cell)
        except json.JSONDecodeError as err:
            raise SubmissionError(
                f"{where}, column 'passage_id': not JSON ({err.msg}): {cell[:60]!r}; "
                'expected a list like ["12","3"]'
            ) from None
        if not isinstance(ids, list):
            raise SubmissionError(
                f"{where}, column 'passage_id': a JSON {type(ids).__name__}; expected a list of ids"
            )
        if len(ids) != rs.submit_k:
            raise SubmissionError(
                f"{where}, column 'passage_id': {len(ids)} ids; the {rs.name} rules take exactly "
                f"{rs.submit_k} (the {other} rules {get_rules(other).submit_k}; pass --rules to choose)"
            )
        bad = [i for i in ids if not isinstance(i, str)]
        if bad:
            raise SubmissionError(
                f"{where}, column 'passage_id': id {bad[0]!r} is a JSON {type(bad[0]).__name__}; "
                'ids are strings, e.g. ["12","3"]'
            )
        out[qid] = ids
        line_of[qid] = line
    return out


def check_against_truth(
    sub: Mapping[str, Sequence[str]],
    truth: TruthLike,
    where: Path | str,
    known_ids: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Any]:
    """Refuse a submission that misses questions of the truth or lists questions it does not
    know; count (but allow) ids that are not candidates of their question, when `known_ids`
    (question id -> its candidate ids) is given. Returns the counts."""
    expected = set(truth.mmdocir) | set(truth.m2kr)
    missing = sorted(expected - set(sub), key=_qid_key)
    if missing:
        raise SubmissionError(
            f"{where}: {len(missing)} of the truth's {len(expected)} questions have no row "
            f"(first: {_show(missing)})"
        )
    unknown = [q for q in sub if q not in expected]
    if unknown:
        raise SubmissionError(
            f"{where}: {len(unknown)} question ids are not in the truth (first: {_show(unknown)}); "
            "is this the truth of the data the submission was made from?"
        )
    counts: dict[str, Any] = {"questions": len(sub), "unknown_ids": None, "rows_with_unknown_ids": None}
    if known_ids is not None:
        n_ids = n_rows = 0
        for qid, ids in sub.items():
            cand = known_ids.get(qid, ())
            n = sum(1 for i in set(ids) if i not in cand)
            n_ids += n
            n_rows += n > 0
        counts["unknown_ids"] = n_ids
        counts["rows_with_unknown_ids"] = n_rows
    return counts
