"""The generator's answer key: gold page / passage ids and the kind of every test question.

Written to `root/truth/` and never read by a retriever: `truth/gold.jsonl` has one line per
question, `{"task": "mmdocir"|"m2kr", "question_id", "gold": [ids], "kind", "answer"}`, and
`truth/summary.json` the counts, seed and scale of the data set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mmctr.errors import DataError
from mmctr.retrieval.data.types import M2KR_KINDS

GOLD_FILE = "gold.jsonl"
SUMMARY_FILE = "summary.json"
TASKS = ("mmdocir", "m2kr")
DOC_KINDS = ("text", "table", "chart", "figure")


@dataclass
class Truth:
    mmdocir: dict[str, list[str]] = field(default_factory=dict)  # question_id -> gold page ids
    m2kr: dict[str, list[str]] = field(default_factory=dict)  # question_id -> gold passage ids
    kind: dict[str, str] = field(default_factory=dict)  # question_id -> DOC_KINDS / M2KR_KINDS
    answer: dict[str, list[str]] = field(default_factory=dict)  # the facts a question asks for
    source: str = ""


def write_truth(truth_dir: Path, rows: list[dict], summary: dict) -> None:
    """rows: dicts with task, question_id, gold, kind, answer (written in the given order)."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    with open(truth_dir / GOLD_FILE, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (truth_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


def load_truth(path: Path) -> Truth:
    """Read `path/truth/gold.jsonl` (path = a data root) or `path/gold.jsonl` (path = truth dir)."""
    path = Path(path)
    gold_path = path / "truth" / GOLD_FILE
    if not gold_path.exists():
        gold_path = path / GOLD_FILE
    if not gold_path.exists():
        raise DataError(
            path / "truth" / GOLD_FILE,
            None,
            "file not found; only data written by the generator has a truth/ folder "
            "(the real challenge files carry no gold)",
        )
    truth = Truth(source=str(gold_path))
    with open(gold_path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(gold_path, None, f"line {n}: not JSON ({err.msg})") from err
            for key in ("task", "question_id", "gold", "kind"):
                if key not in r:
                    raise DataError(gold_path, key, f"line {n}: missing")
            task, qid, kind = r["task"], str(r["question_id"]), r["kind"]
            if task not in TASKS:
                raise DataError(gold_path, "task", f"line {n}: {task!r} is not one of {TASKS}")
            kinds = DOC_KINDS if task == "mmdocir" else M2KR_KINDS
            if kind not in kinds:
                raise DataError(gold_path, "kind", f"line {n}: {kind!r} is not one of {kinds}")
            if not isinstance(r["gold"], list) or not r["gold"]:
                raise DataError(gold_path, "gold", f"line {n}: expected a non-empty list of ids")
            table = truth.mmdocir if task == "mmdocir" else truth.m2kr
            if qid in table:
                raise DataError(gold_path, "question_id", f"line {n}: {task} question {qid} repeated")
            table[qid] = [str(g) for g in r["gold"]]
            truth.kind[qid] = kind
            truth.answer[qid] = [str(a) for a in r.get("answer", [])]
    return truth
