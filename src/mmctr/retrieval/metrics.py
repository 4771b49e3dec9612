"""Track 1's metrics under both rule sets.

MMDocIR counts fractional recall, |top-k ∩ gold| / |gold| (313 of its 1,658 questions have several
gold pages); M2KR counts PreFLMR's hit rate, 1 if any top-k id is gold. nDCG@5 (binary relevance,
as ViDoRe reports it) is shown beside them but scores nothing. A task's score is the mean of its
recalls at the rule set's cut-offs, the overall score the mean of the task scores.

A ranking is a list of ids, best first: ties were broken by whoever wrote it, so its order is the
order scored. An id repeated in a ranking counts once, at its first place: teams padded short
lists by repeating their top id, and a repeat must not add to recall or nDCG. A question of the
truth without a ranking scores 0; a ranking for a question the truth does not know is ignored
(`mmctr.retrieval.submission.check_against_truth` refuses those before scoring).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mmctr.errors import ConfigError


@dataclass(frozen=True)
class RuleSet:
    """One version of the challenge's rules: which recalls make a task's score, and how many ids
    a submission lists per question."""

    name: str
    ks: tuple[int, ...]  # the task score is the mean of R@k over these
    submit_k: int  # ids per question in the submission CSV
    about: str = ""


RULES: dict[str, RuleSet] = {
    "final": RuleSet(
        "final", (1, 3, 5), 5, "the Kaggle competition that ran: MMDocIR + M2KR-Challenge, top-5 ids"
    ),
    "draft": RuleSet("draft", (1, 5, 10), 10, "the challenge page's first draft: ViDoRe + M2KR, top-10 ids"),
}

# Reported for every task whatever the rules, so numbers compare across rule sets and papers.
REPORT_KS = (1, 3, 5, 10)
NDCG_K = 5

# How each task counts recall.
RECALL = {"mmdocir": "fractional", "m2kr": "hit"}
TASKS = ("mmdocir", "m2kr")

# Kinds in the order tables show them; kinds not listed follow alphabetically.
KIND_ORDER = ("text", "table", "chart", "figure", "image", "image_question", "wit")


class TruthLike(Protocol):
    """What `evaluate` reads of `mmctr.retrieval.data.Truth`."""

    mmdocir: Mapping[str, Sequence[str]]
    m2kr: Mapping[str, Sequence[str]]
    kind: Mapping[str, str]


def get_rules(rules: str | RuleSet) -> RuleSet:
    if isinstance(rules, RuleSet):
        return rules
    if rules not in RULES:
        raise ConfigError(f"unknown rule set {rules!r}; expected one of {', '.join(RULES)}")
    return RULES[rules]


def first_occurrences(ranking: Iterable[str]) -> list[str]:
    """`ranking` with each id kept at its first place only."""
    seen: set[str] = set()
    out = []
    for r in ranking:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def fractional_recall(ranking: Sequence[str], gold: Collection[str], k: int) -> float:
    """|top-k ∩ gold| / |gold| (MMDocIR). `ranking` must already hold each id once."""
    return len(set(ranking[:k]) & set(gold)) / len(gold)


def hit(ranking: Sequence[str], gold: Collection[str], k: int) -> float:
    """1 if any of the top k is gold, else 0 (M2KR, PreFLMR's "recall")."""
    g = set(gold)
    return float(any(r in g for r in ranking[:k]))


def ndcg(ranking: Sequence[str], gold: Collection[str], k: int = NDCG_K) -> float:
    """nDCG@k with binary relevance: gain 1/log2(rank+1) for each gold id in the top k, over the
    gain of a ranking that lists the gold first. `ranking` must already hold each id once."""
    g = set(gold)
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(ranking[:k]) if r in g)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(g), k)))
    return dcg / ideal


_RECALL_FN = {"fractional": fractional_recall, "hit": hit}


def question_score(
    ranking: Sequence[Any], gold: Collection[Any], recall: str, rules: str | RuleSet = "final"
) -> float:
    """One question's task score: the mean of its R@k over the rules' ks, `recall` "fractional"
    (MMDocIR) or "hit" (M2KR). `ranking` holds each id once; `gold` is not empty."""
    recall_fn = _RECALL_FN[recall]
    ks = get_rules(rules).ks
    return sum(recall_fn(ranking, gold, k) for k in ks) / len(ks)


def _summarise(per_q: list[dict[str, float]], ks: tuple[int, ...]) -> dict[str, Any]:
    n = len(per_q)
    out: dict[str, Any] = {}
    for key in [f"R@{k}" for k in REPORT_KS] + [f"nDCG@{NDCG_K}"]:
        out[key] = sum(q[key] for q in per_q) / n if n else 0.0
    out["score"] = sum(out[f"R@{k}"] for k in ks) / len(ks)
    out["questions"] = n
    return out


def _kind_key(kind: str) -> tuple[int, str]:
    return (KIND_ORDER.index(kind), "") if kind in KIND_ORDER else (len(KIND_ORDER), kind)


def evaluate_task(
    ranked: Mapping[str, Sequence[str]],
    gold: Mapping[str, Collection[str]],
    recall: str,
    rules: str | RuleSet = "final",
    kinds: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One task's recalls, nDCG@5 and score over the questions of `gold`. Questions whose gold
    list is empty cannot be scored and are only counted (`no_gold`)."""
    rs = get_rules(rules)
    recall_fn = _RECALL_FN[recall]
    max_k = max(*REPORT_KS, NDCG_K, *rs.ks)
    per_q: dict[str, dict[str, float]] = {}
    unranked = no_gold = 0
    for qid, g in gold.items():
        if not g:
            no_gold += 1
            continue
        if qid not in ranked:
            unranked += 1
        top = first_occurrences(ranked.get(qid, ()))[:max_k]
        scores = {f"R@{k}": recall_fn(top, g, k) for k in set(REPORT_KS) | set(rs.ks)}
        scores[f"nDCG@{NDCG_K}"] = ndcg(top, g, NDCG_K)
        per_q[qid] = scores
    out = _summarise(list(per_q.values()), rs.ks)
    out["recall"] = recall
    out["unranked"] = unranked
    out["no_gold"] = no_gold
    by_kind: dict[str, list[dict[str, float]]] = {}
    # A task none of whose questions has a kind gets no breakdown (not one "unknown" row).
    if kinds and any(kinds.get(q) for q in per_q):
        for qid, scores in per_q.items():
            by_kind.setdefault(kinds.get(qid) or "unknown", []).append(scores)
    out["by_kind"] = {k: _summarise(by_kind[k], rs.ks) for k in sorted(by_kind, key=_kind_key)}
    return out


def evaluate(
    ranked_docs: Mapping[str, Sequence[str]] | None,
    ranked_passages: Mapping[str, Sequence[str]] | None,
    truth: TruthLike,
    rules: str | RuleSet = "final",
    kinds: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Both tasks and the overall score, as `{"mmdocir": {...}, "m2kr": {...}, "overall": {...}}`.

    A task is scored when the truth has questions for it and a ranking dict is given; otherwise its
    entry is None and `overall` is the mean over the tasks that were scored (its `tasks` and `note`
    say which). One submission CSV holds both tasks, so the same dict may be passed twice.
    `kinds` (question id -> kind) defaults to the truth's own; each task then has `by_kind`.
    Values are fractions in [0, 1].
    """
    rs = get_rules(rules)
    if kinds is None:
        kinds = getattr(truth, "kind", None) or {}
    result: dict[str, Any] = {}
    for task, ranked in (("mmdocir", ranked_docs), ("m2kr", ranked_passages)):
        gold = getattr(truth, task, None) or {}
        result[task] = (
            evaluate_task(ranked, gold, RECALL[task], rs, kinds) if gold and ranked is not None else None
        )
    scored = [t for t in TASKS if result[t] is not None]
    overall: dict[str, Any] = {
        "score": sum(result[t]["score"] for t in scored) / len(scored) if scored else 0.0,
        "rules": rs.name,
        "ks": list(rs.ks),
        "tasks": scored,
    }
    if len(scored) == 1:
        overall["note"] = f"only {scored[0]} was scored; overall is its score"
    elif not scored:
        overall["note"] = "no task was scored (the truth has no questions, or no rankings were given)"
    result["overall"] = overall
    return result
