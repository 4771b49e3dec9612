"""The gallery of missed Track 1 queries: a submission CSV read against the generator's truth,
the questions whose gold is nowhere in the listed ids, with the images a reader needs to see why."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Miss:
    """A question whose gold is nowhere in the submitted top k."""

    task: str
    question_id: str
    kind: str
    question: str
    query_image: bytes | None
    gold_id: str
    gold_image: bytes | None
    gold_text: str
    top_id: str
    top_image: bytes | None
    top_text: str


THUMB_PX = 320  # longest side of a gallery image


def find_demo_inputs(demo: Path) -> tuple[Path | None, Path | None]:
    """The submission CSV and the data root (one with truth/) of a `mmctr retrieval demo` folder."""
    csvs = sorted(demo.glob("submission_*.csv"), key=lambda p: p.stat().st_mtime)
    roots = sorted(p for p in demo.glob("data_*") if (p / "truth" / "gold.jsonl").is_file())
    return (csvs[-1] if csvs else None), (roots[-1] if roots else None)


def thumbnail(data: bytes | None, px: int = THUMB_PX) -> bytes | None:
    """`data` (any image PIL reads) as a small JPEG, or None when it cannot be read."""
    if not data:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.thumbnail((px, px))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=72)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return buf.getvalue()


def _file(path: Path | None) -> bytes | None:
    try:
        return Path(path).read_bytes() if path else None
    except OSError:
        return None


def _round_robin(qids: list[str], kind: dict[str, str], n: int) -> list[str]:
    """Up to n ids, taking one of each kind in turn, so that every kind of miss is shown."""
    by_kind: dict[str, list[str]] = {}
    for q in qids:
        by_kind.setdefault(kind.get(q, ""), []).append(q)
    out: list[str] = []
    while len(out) < n and any(by_kind.values()):
        for k in sorted(by_kind):
            if by_kind[k] and len(out) < n:
                out.append(by_kind[k].pop(0))
    return out


def _missed(ranked: dict[str, list[str]], gold: dict[str, list[str]]) -> list[str]:
    def key(q: str) -> tuple[int, str]:
        return (int(q), "") if q.isdigit() else (1 << 62, q)

    return sorted((q for q, g in gold.items() if g and not set(ranked.get(q, ())) & set(g)), key=key)


def worst_misses(data_root: Path, csv: Path, rules: str = "final", per_task: int = 6) -> list[Miss]:
    """Questions whose gold is in none of the submitted ids (R@k = 0 at the rules' k), a few of
    every kind per task: the query, its gold and the item ranked first."""
    from mmctr.retrieval.data import load, load_truth
    from mmctr.retrieval.submission import read_submission

    data = load(Path(data_root))
    truth = load_truth(Path(data_root))
    ranked = read_submission(csv, rules)
    out: list[Miss] = []
    if data.docs is not None and truth.mmdocir:
        docs = data.docs
        row_of = {
            (d, p): i for i, (d, p) in enumerate(zip(docs.pages.doc_name, docs.pages.page_id, strict=True))
        }
        question = {q.question_id: q for q in docs.questions}

        def page(doc: str, pid: str) -> tuple[bytes | None, str]:
            i = row_of.get((doc, pid))
            if i is None:
                return None, f"(page {pid} is not a page of {doc})"
            return thumbnail(docs.pages.image(i)), docs.pages.vlm_text[i] or docs.pages.ocr_text[i]

        for qid in _round_robin(_missed(ranked, truth.mmdocir), truth.kind, per_task):
            q = question.get(qid)
            if q is None:
                continue
            gold_id, top_id = truth.mmdocir[qid][0], ranked[qid][0]
            gi, gt = page(q.doc_name, gold_id)
            ti, tt = page(q.doc_name, top_id)
            out.append(
                Miss(
                    "mmdocir", qid, truth.kind.get(qid, ""), q.question, None, gold_id, gi, gt, top_id, ti, tt
                )
            )
    if data.passages is not None and truth.m2kr:
        ps = data.passages
        row_of_p = {pid: i for i, pid in enumerate(ps.passages.passage_id)}
        query = {q.question_id: q for q in ps.queries}

        def passage(pid: str) -> tuple[bytes | None, str]:
            i = row_of_p.get(pid)
            if i is None:
                return None, f"(passage {pid} is not in the pool)"
            return thumbnail(_file(ps.passages.screenshot[i])), ps.passages.text[i]

        for qid in _round_robin(_missed(ranked, truth.m2kr), truth.kind, per_task):
            q = query.get(qid)
            if q is None:
                continue
            gold_id, top_id = truth.m2kr[qid][0], ranked[qid][0]
            gi, gt = passage(gold_id)
            ti, tt = passage(top_id)
            text = q.question or q.instruction
            out.append(
                Miss(
                    "m2kr",
                    qid,
                    truth.kind.get(qid, q.kind),
                    text,
                    thumbnail(_file(q.image_path)),
                    gold_id,
                    gi,
                    gt,
                    top_id,
                    ti,
                    tt,
                )
            )
    return out
