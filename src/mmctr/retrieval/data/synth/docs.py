"""The MMDocIR-like world as plain data: documents, what each page prints or draws, and the
questions with their gold pages. Nothing here draws a pixel (pages.py does).

A document has a domain, a few topic words, named subjects ("the Valmora division"), the domain's
measures and six years. Every (subject, measure, year) is stated at most once in the document, as a
sentence, a table cell or a chart bar, so a question has exactly the gold pages it names while
every other page of the document shares most of its words. Chart and figure content exists only
as graphics (and in the page's VLM description), never as printed text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmctr.retrieval.data.synth.config import DOC_KIND_SHARES, TWO_GOLD_SHARE, DocScale
from mmctr.retrieval.data.synth.text import (
    COLOURS,
    DOMAINS,
    FACT_TEMPLATES,
    FACT_VERBS,
    FILLER_TEMPLATES,
    HEADING_TEMPLATES,
    MARKER_SHAPES,
    Domain,
    Metric,
    cap,
    drop_words,
    format_value,
    make_names,
    metric_as_asked,
    pick,
)

DOC_SALT = 0xD0C5
KINDS = tuple(DOC_KIND_SHARES)
# How many questions may ask about one prose fact / one table, chart or figure (about another cell,
# bar or marker): graphics are rarer than sentences, and real documents get several questions each.
_USES = {"text": 1, "table": 2, "chart": 2, "figure": 2}


@dataclass
class Sentence:
    text: str
    fact: bool = False  # fact sentences are never dropped when a page overflows


@dataclass
class TableEl:
    title: str
    header: list[str]  # "" then the years
    rows: list[list[str]]  # subject name then the printed values


@dataclass
class ChartEl:
    style: str  # "bar" | "pie"
    title: str
    labels: list[str]
    values: list[float]
    unit: str


@dataclass
class FigureEl:
    title: str
    markers: list[tuple[str, str, str]]  # (object, colour, shape)


@dataclass
class PageSpec:
    doc_title: str
    domain: str
    page_no: int  # 1-based, as printed
    heading: str
    paragraphs: list[list[Sentence]]
    element: TableEl | ChartEl | FigureEl | None = None
    element_no: int = 0  # "Table 3" / "Figure 3" caption number
    element_after: int = 1  # paragraphs printed before the element


@dataclass
class DocSpec:
    index: int
    name: str  # doc_name, e.g. "0e94b4197b10096b1f4c699701570fbf.pdf"
    domain: str
    title: str
    pages: list[PageSpec]


@dataclass
class QuestionSpec:
    doc: int
    text: str
    gold: list[int]  # 0-based pages
    kind: str
    answer: list[str]


@dataclass
class _Fact:
    page: int
    subject: str
    metric: Metric
    year: int
    value: float


@dataclass
class _DocFacts:
    """What a document states, kept to ask questions about it."""

    text: list[_Fact] = field(default_factory=list)
    tables: list[tuple[int, TableEl, Metric, list[int], list[_Fact]]] = field(default_factory=list)
    charts: list[tuple[int, ChartEl, Metric, int]] = field(default_factory=list)
    figures: list[tuple[int, FigureEl, str]] = field(default_factory=list)  # page, figure, topic
    # How many tables and charts show each (metric, year): "which is highest" needs exactly one.
    shown: dict[tuple[str, int], int] = field(default_factory=dict)

    def unique(self, m: Metric, y: int) -> bool:
        return self.shown.get((m.name, y), 0) == 1


def page_counts(scale: DocScale, rng: np.random.Generator) -> np.ndarray:
    """Pages per document: lognormal around the mean (long documents are rare but real)."""
    sigma = 0.55
    raw = rng.lognormal(np.log(scale.mean_pages) - sigma**2 / 2, sigma, scale.n_docs)
    counts = np.clip(np.round(raw), scale.min_pages, scale.max_pages).astype(np.int64)
    if scale.total_pages:
        # Rescale to the exact total (the real 20,395), spreading the rounding over documents.
        target = scale.total_pages
        for _ in range(50):
            diff = target - int(counts.sum())
            if diff == 0:
                break
            step = np.sign(diff)
            room = (counts < scale.max_pages) if step > 0 else (counts > scale.min_pages)
            idx = np.flatnonzero(room)
            take = rng.choice(idx, size=min(abs(diff), len(idx)), replace=False)
            counts[take] += step
    return counts


def _doc_name(domain: Domain, title_words: list[str], year: int, rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return "".join(f"{int(b):02x}" for b in rng.integers(0, 256, 16)) + ".pdf"
    stem = "-".join(cap(w.replace(" ", "")) for w in title_words)
    return f"{domain.name.split()[0][:3].upper()}_{year}_{stem}-{int(rng.integers(100, 999))}.pdf"


def _value(m: Metric, rng: np.random.Generator) -> float:
    v = float(rng.uniform(m.lo, m.hi))
    return round(v) if v >= 100 else round(v, 1)


def _fmt(template: str, **kw: str) -> str:
    kw.update({k.upper(): cap(v) for k, v in list(kw.items()) if len(k) == 2 and k[0] == "t"})
    return template.format(**kw)


def plan_doc(index: int, domain: Domain, n_pages: int, seed: int, split: int) -> tuple[DocSpec, _DocFacts]:
    """One document: its vocabulary, every page's content and the facts a question may ask."""
    rng = np.random.default_rng([seed, DOC_SALT, split, index])
    topics = [domain.topics[i] for i in rng.permutation(len(domain.topics))[:8]]
    n_subjects = int(np.clip(5 + n_pages // 5, 6, 24))
    subjects = make_names(n_subjects, rng)  # plain str throughout (numpy would hand back np.str_)
    metrics = list(domain.metrics)
    base_year = int(rng.integers(2005, 2019))
    years = list(range(base_year, base_year + 6))
    title = f"{cap(topics[0])} and {topics[1]} review {years[-1]}"
    name = _doc_name(domain, [topics[0], topics[1]], years[-1], rng)

    # Every (subject, metric, year) is stated at most once in the document.
    free = {(s, m.name, y) for s in subjects for m in metrics for y in years}
    # Prose facts are taken in one shuffled order (a scan, not a search of the whole set per sentence).
    triples = sorted(free)
    order = [triples[i] for i in rng.permutation(len(triples))]
    figure_topics = list(topics)
    facts = _DocFacts()
    pages: list[PageSpec] = []
    element_no = 0
    p_table, p_chart, p_figure = domain.element_p

    for p in range(n_pages):
        heading = _fmt(pick(rng, HEADING_TEMPLATES), t1=pick(rng, topics), t2=pick(rng, topics))
        element: TableEl | ChartEl | FigureEl | None = None
        avoid: set[str] = set()  # subjects drawn only as graphics on this page: keep them out of the prose
        printed_numbers: set[str] = set()
        r = rng.random() if p > 0 else 1.0  # the first page is a cover of prose
        if r < p_table:
            m = pick(rng, metrics)
            col_years = years[int(rng.integers(0, 4)) :][:3]
            rows_s = [subjects[i] for i in rng.permutation(len(subjects))]
            rows_s = [s for s in rows_s if all((s, m.name, y) in free for y in col_years)]
            rows_s = rows_s[: int(rng.integers(3, 6))]
            if len(rows_s) >= 3:
                cells: list[_Fact] = []
                rows = []
                for s in rows_s:
                    vals = [_value(m, rng) for _ in col_years]
                    rows.append([s] + [format_value(v) for v in vals])
                    for y, v in zip(col_years, vals, strict=True):
                        free.discard((s, m.name, y))
                        cells.append(_Fact(p, s, m, y, v))
                element_no += 1
                element = TableEl(
                    f"{cap(m.name)} by {domain.kind} ({m.unit})", [""] + [str(y) for y in col_years], rows
                )
                facts.tables.append((p, element, m, col_years, cells))
                for y in col_years:
                    facts.shown[(m.name, y)] = facts.shown.get((m.name, y), 0) + 1
                printed_numbers |= {c for row in rows for c in row[1:]}
        elif r < p_table + p_chart:
            m, y = pick(rng, metrics), pick(rng, years)
            labels = [subjects[i] for i in rng.permutation(len(subjects)) if (subjects[i], m.name, y) in free]
            labels = labels[: int(rng.integers(3, 7))]
            if len(labels) >= 3:
                element_no += 1
                if rng.random() < 0.3:
                    shares = rng.dirichlet(np.ones(len(labels)) * 2.0) * 100
                    vals = [round(float(v), 1) for v in shares]
                    element = ChartEl(
                        "pie", f"Share of {m.name} by {domain.kind}, {y}", labels, vals, "percent"
                    )
                else:
                    vals = [_value(m, rng) for _ in labels]
                    element = ChartEl(
                        "bar", f"{cap(m.name)} by {domain.kind}, {y} ({m.unit})", labels, vals, m.unit
                    )
                if len(set(vals)) == len(vals):  # the question "which is highest" needs one answer
                    for s in labels:
                        free.discard((s, m.name, y))
                    facts.charts.append((p, element, m, y))
                    facts.shown[(m.name, y)] = facts.shown.get((m.name, y), 0) + 1
                    avoid = set(labels)
                else:
                    element, element_no = None, element_no - 1
        elif r < p_table + p_chart + p_figure and figure_topics:
            topic = figure_topics.pop(int(rng.integers(0, len(figure_topics))))
            n_mark = int(rng.integers(3, min(5, len(domain.figure_objects)) + 1))
            objs = [domain.figure_objects[i] for i in rng.permutation(len(domain.figure_objects))[:n_mark]]
            cols = [list(COLOURS)[i] for i in rng.permutation(len(COLOURS))[:n_mark]]
            markers = [(o, c, pick(rng, MARKER_SHAPES)) for o, c in zip(objs, cols, strict=True)]
            element_no += 1
            element = FigureEl(f"{cap(domain.figure_subject)} of the {topic}", markers)
            facts.figures.append((p, element, topic))

        # Prose: 1-4 fact sentences (about subjects not drawn on this page) among filler.
        sentences: list[Sentence] = []
        n_fact = int(rng.integers(1, 5)) if p > 0 else int(rng.integers(0, 2))
        for _ in range(n_fact):
            while order and order[0] not in free:
                order.pop(0)
            pick_at = next((j for j, t in enumerate(order) if t in free and t[0] not in avoid), None)
            if pick_at is None:
                break
            s, mname, y = order.pop(pick_at)
            m = next(mm for mm in metrics if mm.name == mname)
            v = _value(m, rng)
            if format_value(v) in printed_numbers:
                v = v + 1 if v >= 100 else round(v + 0.1, 1)
            free.discard((s, mname, y))
            text = pick(rng, FACT_TEMPLATES).format(
                year=y, metric=m.name, name=s, kind=domain.kind, verb=pick(rng, FACT_VERBS),
                value=format_value(v), unit=m.unit,
            )  # fmt: skip
            sentences.append(Sentence(cap(text), fact=True))
            facts.text.append(_Fact(p, s, m, y, v))
            printed_numbers.add(format_value(v))
        for _ in range(int(rng.integers(4, 13))):
            t1, t2 = (topics[i] for i in rng.permutation(len(topics))[:2])
            sentences.insert(
                int(rng.integers(0, len(sentences) + 1)),
                Sentence(_fmt(pick(rng, FILLER_TEMPLATES), t1=t1, t2=t2, kind=domain.kind)),
            )
        cuts = sorted(
            rng.choice(np.arange(1, len(sentences)), size=min(2, len(sentences) - 1), replace=False)
        )
        paragraphs = [sentences[a:b] for a, b in zip([0, *cuts], [*cuts, len(sentences)], strict=True)]
        if isinstance(element, ChartEl):
            _separate_numbers(element, printed_numbers)
        after = int(rng.integers(0, len(paragraphs) + 1))
        pages.append(PageSpec(title, domain.name, p + 1, heading, paragraphs, element, element_no, after))
    return DocSpec(index, name, domain.name, title, pages), facts


def _separate_numbers(chart: ChartEl, printed: set[str]) -> None:
    """A chart value must not also be printed on its page, or OCR would see the chart's answer."""
    for i, v in enumerate(chart.values):
        while format_value(v) in printed or (chart.style == "pie" and f"{v:.1f}" in printed):
            v = v + 1 if v >= 100 else round(v + 0.1, 1)
        chart.values[i] = v


# ----------------------------------------------------------------------------------------------
# Questions


def _subject(name: str, domain: Domain, rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.4:
        return name
    kind = domain.kind if r < 0.7 else pick(rng, domain.kind_synonyms)
    return f"the {name} {kind}"


def _ask_text(f: _Fact, domain: Domain, rng: np.random.Generator, table: bool) -> str:
    m, s, y = metric_as_asked(f.metric, rng), _subject(f.subject, domain, rng), f.year
    if table:
        t = pick(rng, (
            "According to the table, what {m} did {s} have in {y}?",
            "In the table of {m}, which value is listed for {s} in {y}?",
            "What does the tabulated data give as the {m} of {s} for {y}?",
        ))  # fmt: skip
    else:
        t = pick(rng, (
            "What was the {m} of {s} in {y}?",
            "How much {m} did {s} report for {y}?",
            "In {y}, what {m} was recorded for {s}?",
            "What {m} figure is given for {s} in {y}?",
        ))  # fmt: skip
    return drop_words(t.format(m=m, s=s, y=y), rng)


def _compare(a: _Fact, b: _Fact, domain: Domain, rng: np.random.Generator, prefix: str = "") -> str:
    t = pick(rng, (
        "Which was higher, the {m1} of {s1} in {y1} or the {m2} of {s2} in {y2}?",
        "Compare the {m1} of {s1} ({y1}) with the {m2} of {s2} ({y2}): which is larger?",
    ))  # fmt: skip
    text = t.format(
        m1=metric_as_asked(a.metric, rng), s1=_subject(a.subject, domain, rng), y1=a.year,
        m2=metric_as_asked(b.metric, rng), s2=_subject(b.subject, domain, rng), y2=b.year,
    )  # fmt: skip
    return prefix + text[0].lower() + text[1:] if prefix else text


def _winner(chart: ChartEl) -> str:
    return chart.labels[int(np.argmax(chart.values))]


def _ask_chart(
    chart: ChartEl, m: Metric, y: int, unique: bool, domain: Domain, rng: np.random.Generator
) -> tuple[str, list[str]]:
    """Which label wins (only when no other table or chart shows the same metric and year), or
    the value of one label."""
    graph = pick(rng, ("chart", "graph", "plot"))
    kind = pick(rng, (domain.kind, *domain.kind_synonyms))
    ma = metric_as_asked(m, rng)
    if chart.style == "pie":
        if unique and rng.random() < 0.6:
            return f"Which {kind} holds the largest share of {ma} in the {y} pie {graph}?", [_winner(chart)]
        i = int(rng.integers(0, len(chart.labels)))
        return f"What share of {ma} does {chart.labels[i]} hold in the {y} pie {graph}?", [
            format_value(chart.values[i])
        ]
    if unique and rng.random() < 0.6:
        q = pick(rng, (
            f"In the {graph} of {ma} by {kind} for {y}, which {kind} is highest?",
            f"Which {kind} has the tallest bar in the {y} {ma} {graph}?",
        ))  # fmt: skip
        return q, [_winner(chart)]
    i = int(rng.integers(0, len(chart.labels)))
    q = f"What {ma} does the {graph} show for {chart.labels[i]} in {y}?"
    return q, [format_value(chart.values[i])]


def _ask_figure(fig: FigureEl, topic: str, domain: Domain, rng: np.random.Generator) -> tuple[str, list[str]]:
    obj, colour, shape = fig.markers[int(rng.integers(0, len(fig.markers)))]
    what = domain.figure_subject
    if rng.random() < 0.6:
        return f"What colour is the marker for the {obj} in the {what} of the {topic}?", [colour]
    return f"Which shape marks the {obj} on the {topic} {what.split()[-1]}?", [shape]


def plan_questions(
    docs: list[tuple[DocSpec, _DocFacts]], n_questions: int, seed: int, split: int
) -> list[QuestionSpec]:
    """Questions spread over documents (at least one each, more for longer ones), with the kind
    shares of DOC_KIND_SHARES and TWO_GOLD_SHARE of them about two pages."""
    rng = np.random.default_rng([seed, DOC_SALT, split, 1 << 20])
    n_docs = len(docs)
    weight = np.sqrt([len(d.pages) for d, _ in docs])
    extra = rng.multinomial(max(0, n_questions - n_docs), weight / weight.sum())
    per_doc = 1 + extra if n_questions >= n_docs else (np.arange(n_docs) < n_questions).astype(int)
    kinds = np.array(KINDS)[rng.choice(len(KINDS), size=n_questions, p=list(DOC_KIND_SHARES.values()))]
    two = np.zeros(n_questions, bool)
    two[rng.choice(n_questions, size=round(TWO_GOLD_SHARE * n_questions), replace=False)] = True

    out: list[QuestionSpec] = []
    k = 0
    for (doc, facts), n in zip(docs, per_doc.tolist(), strict=True):
        domain = next(d for d in DOMAINS if d.name == doc.domain)
        drng = np.random.default_rng([seed, DOC_SALT, split, doc.index, 1 << 21])
        used: dict[str, dict[int, int]] = {k: {} for k in KINDS}
        for _ in range(n):
            q = _one_question(doc, facts, domain, str(kinds[k]), bool(two[k]), used, drng)
            if q is None:  # the document has nothing left of that kind: ask about its prose
                q = _one_question(doc, facts, domain, "text", bool(two[k]), used, drng)
            if q is None:
                q = _one_question(doc, facts, domain, "text", False, used, drng)
            if q is None:
                raise RuntimeError(f"document {doc.name} has no fact left for a question; raise its pages")
            out.append(q)
            k += 1
    return out


def _one_question(
    doc: DocSpec, facts: _DocFacts, domain: Domain, kind: str, two: bool, used: dict, rng: np.random.Generator
) -> QuestionSpec | None:
    def fresh(pool: list, n: int) -> list[int] | None:
        """n unused entries of pool on distinct pages, or None."""
        idx = [i for i in rng.permutation(len(pool)).tolist() if used[kind].get(i, 0) < _USES[kind]]
        chosen: list[int] = []
        for i in idx:
            page = pool[i][0] if isinstance(pool[i], tuple) else pool[i].page
            pages = {pool[j][0] if isinstance(pool[j], tuple) else pool[j].page for j in chosen}
            if page not in pages:
                chosen.append(i)
            if len(chosen) == n:
                for i in chosen:
                    used[kind][i] = used[kind].get(i, 0) + 1
                return chosen
        return None

    n = 2 if two else 1
    if kind == "text":
        got = fresh(facts.text, n)
        if got is None:
            return None
        fs = [facts.text[i] for i in got]
        text = _ask_text(fs[0], domain, rng, False) if n == 1 else _compare(fs[0], fs[1], domain, rng)
        return QuestionSpec(doc.index, text, [f.page for f in fs], kind, [format_value(f.value) for f in fs])
    if kind == "table":
        got = fresh(facts.tables, n)
        if got is None:
            return None
        cells = [facts.tables[i][4][int(rng.integers(0, len(facts.tables[i][4])))] for i in got]
        if n == 2:
            text = _compare(cells[0], cells[1], domain, rng, "According to the tables, ")
        else:
            page, table, m, years, tcells = facts.tables[got[0]]
            y = pick(rng, years)
            if rng.random() < 0.6 or not facts.unique(m, y):
                text = _ask_text(cells[0], domain, rng, True)
                return QuestionSpec(doc.index, text, [page], kind, [format_value(cells[0].value)])
            col = sorted((c for c in tcells if c.year == y), key=lambda c: c.value)
            best = col[-1]
            if best.value == col[-2].value:  # a tie has no single answer
                text = _ask_text(cells[0], domain, rng, True)
                return QuestionSpec(doc.index, text, [page], kind, [format_value(cells[0].value)])
            kind_word = pick(rng, (domain.kind, *domain.kind_synonyms))
            text = (
                f"Which {kind_word} had the highest {metric_as_asked(m, rng)} in {y} according to the table?"
            )
            return QuestionSpec(doc.index, text, [page], kind, [best.subject])
        return QuestionSpec(
            doc.index, text, [c.page for c in cells], kind, [format_value(c.value) for c in cells]
        )
    if kind == "chart":
        got = fresh(facts.charts, n)
        if got is None:
            return None
        if n == 1:
            page, chart, m, y = facts.charts[got[0]]
            text, answer = _ask_chart(chart, m, y, facts.unique(m, y), domain, rng)
            return QuestionSpec(doc.index, text, [page], kind, answer)
        (p1, c1, m1, y1), (p2, c2, m2, y2) = (facts.charts[i] for i in got)
        if not (facts.unique(m1, y1) and facts.unique(m2, y2)):
            return None
        kind_word = pick(rng, (domain.kind, *domain.kind_synonyms))
        text = (
            f"Which {kind_word}s lead the charts of {metric_as_asked(m1, rng)} for {y1} "
            f"and of {metric_as_asked(m2, rng)} for {y2}?"
        )
        return QuestionSpec(doc.index, text, [p1, p2], kind, [_winner(c1), _winner(c2)])
    # figure
    got = fresh(facts.figures, n)
    if got is None:
        return None
    if n == 1:
        page, fig, topic = facts.figures[got[0]]
        text, answer = _ask_figure(fig, topic, domain, rng)
        return QuestionSpec(doc.index, text, [page], kind, answer)
    (p1, f1, t1), (p2, f2, t2) = (facts.figures[i] for i in got)
    o1, c1, _ = f1.markers[int(rng.integers(0, len(f1.markers)))]
    o2, c2, _ = f2.markers[int(rng.integers(0, len(f2.markers)))]
    what = domain.figure_subject
    text = f"What colours mark the {o1} in the {what} of the {t1} and the {o2} in the {what} of the {t2}?"
    return QuestionSpec(doc.index, text, [p1, p2], kind, [c1, c2])


def plan_all(scale: DocScale, seed: int, split: int) -> tuple[list[DocSpec], list[QuestionSpec]]:
    rng = np.random.default_rng([seed, DOC_SALT, split])
    counts = page_counts(scale, rng)
    domains = [DOMAINS[i % len(DOMAINS)] for i in rng.permutation(scale.n_docs)]
    planned = [plan_doc(i, domains[i], int(counts[i]), seed, split) for i in range(scale.n_docs)]
    names = [d.name for d, _ in planned]
    if len(set(names)) != len(names):
        raise RuntimeError("two generated documents share a name")  # 128-bit names: never in practice
    questions = plan_questions(planned, scale.n_questions, seed, split)
    return [d for d, _ in planned], questions
