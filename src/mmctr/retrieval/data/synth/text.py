"""Words of the synthetic world: MMDocIR's ten domains, their measures and synonyms, made-up
names, paraphrase and OCR noise.

A document draws its topic words, subjects and measures from its domain, so its pages share
vocabulary and every page is a plausible candidate for every question about the document. Questions
reach a fact through synonyms, other word orders and dropped words, never by copying a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str  # as printed on the page: "net income"
    synonyms: tuple[str, ...]  # as a question may say it: "net profit", "earnings"
    unit: str
    lo: float
    hi: float


@dataclass(frozen=True)
class Domain:
    name: str  # MMDocIR's domain label
    kind: str  # what a subject of this domain is: "division"
    kind_synonyms: tuple[str, ...]
    metrics: tuple[Metric, ...]
    topics: tuple[str, ...]  # topic nouns for headings and filler sentences
    figure_subject: str  # what a figure of this domain depicts: "site plan"
    figure_objects: tuple[str, ...]  # labelled things in a figure; never printed as text
    element_p: tuple[float, float, float]  # P(table), P(chart), P(figure) on a page


M = Metric
# fmt: off
DOMAINS: tuple[Domain, ...] = (
    Domain("Financial report", "division", ("segment", "business unit"), (
        M("revenue", ("sales", "turnover"), "million dollars", 20, 900),
        M("net income", ("net profit", "earnings"), "million dollars", 2, 120),
        M("operating costs", ("operating expenses", "running costs"), "million dollars", 10, 500),
        M("headcount", ("number of employees", "staff count"), "employees", 200, 9000),
        M("capital spending", ("capital expenditure", "investment outlay"), "million dollars", 5, 200),
        M("dividend per share", ("payout per share", "per-share dividend"), "cents", 5, 90),
    ), ("liquidity", "shareholders", "balance sheet", "audit", "forecast", "guidance", "acquisition",
        "margin", "cash flow", "pricing", "inventory", "credit", "leverage", "treasury", "impairment",
        "goodwill", "receivables", "hedging", "refinancing", "disclosure"),
        "organisation chart", ("holding board", "audit committee", "risk office", "treasury desk", "regional hub"),
        (0.40, 0.30, 0.08)),
    Domain("Research report / Introduction", "group", ("cohort", "segment of respondents"), (
        M("approval rating", ("share approving", "approval level"), "percent", 10, 90),
        M("survey respondents", ("people surveyed", "participants"), "respondents", 300, 5000),
        M("median income", ("typical income", "middle income"), "thousand dollars", 20, 120),
        M("broadband adoption", ("home internet uptake", "broadband use"), "percent", 20, 95),
        M("voter turnout", ("share who voted", "election participation"), "percent", 30, 85),
    ), ("attitudes", "demographics", "mobility", "trust", "generations", "households", "opinion",
        "methodology", "sampling", "weighting", "immigration", "education", "partisanship", "optimism",
        "employment", "savings", "religion", "technology use", "news habits", "wellbeing"),
        "survey flow diagram", ("screening step", "consent form", "phone panel", "web panel", "weighting stage"),
        (0.25, 0.45, 0.07)),
    Domain("Administration/Industry file", "plant", ("facility", "works"), (
        M("output", ("production", "units produced"), "thousand units", 50, 900),
        M("energy use", ("power consumption", "electricity demand"), "megawatt hours", 100, 5000),
        M("defect rate", ("fault rate", "share of faulty items"), "percent", 1, 12),
        M("downtime", ("idle time", "stoppage hours"), "hours", 20, 600),
        M("water withdrawal", ("water intake", "water drawn"), "megalitres", 10, 400),
    ), ("maintenance", "safety", "compliance", "procurement", "logistics", "emissions", "shift planning",
        "quality control", "automation", "training", "suppliers", "inspection", "warehousing",
        "permits", "waste handling", "calibration", "tooling", "capacity", "scheduling", "audits"),
        "floor plan", ("press line", "cooling unit", "loading dock", "paint shop", "control room"),
        (0.35, 0.30, 0.12)),
    Domain("Tutorial/Workshop", "module", ("session", "unit"), (
        M("participants", ("attendees", "learners"), "people", 12, 400),
        M("completion rate", ("share finishing", "finish rate"), "percent", 30, 98),
        M("exercise time", ("practice time", "hands-on time"), "minutes", 10, 180),
        M("satisfaction score", ("rating from attendees", "feedback score"), "points", 50, 99),
    ), ("notebooks", "queries", "visualisation", "mapping", "datasets", "scripts", "dashboards",
        "pipelines", "examples", "exercises", "templates", "slides", "workflow", "reporting",
        "analytics", "modelling", "cleaning", "sharing", "versioning", "deployment"),
        "workflow diagram", ("input stage", "query editor", "result viewer", "export step", "review loop"),
        (0.15, 0.30, 0.25)),
    Domain("Academic paper", "method", ("approach", "model"), (
        M("accuracy", ("correct rate", "share answered correctly"), "percent", 40, 99),
        M("training time", ("time to train", "fitting time"), "hours", 1, 300),
        M("error rate", ("mistake rate", "share of errors"), "percent", 1, 40),
        M("parameter count", ("number of weights", "model size"), "million parameters", 5, 900),
        M("inference latency", ("prediction delay", "response time"), "milliseconds", 2, 400),
    ), ("baselines", "ablation", "benchmark", "encoder", "retrieval", "annotation", "evaluation",
        "pretraining", "fine-tuning", "embeddings", "attention", "generalisation", "robustness",
        "corpus", "tokenisation", "supervision", "augmentation", "regularisation", "decoding", "scaling"),
        "architecture diagram", ("vision encoder", "text tower", "fusion block", "scoring head", "memory bank"),
        (0.40, 0.30, 0.15)),
    Domain("Brochure", "venue", ("location", "site"), (
        M("visitors", ("guests", "attendance"), "thousand visitors", 5, 900),
        M("ticket price", ("admission fee", "entry cost"), "dollars", 5, 90),
        M("opening hours", ("hours open", "weekly opening time"), "hours per week", 20, 90),
        M("floor area", ("space available", "surface area"), "square metres", 200, 9000),
    ), ("exhibitions", "tours", "membership", "families", "accessibility", "events", "dining",
        "collections", "gardens", "workshops", "parking", "gift shop", "guides", "seasons",
        "bookings", "schools", "heritage", "galleries", "concerts", "volunteers"),
        "site map", ("main entrance", "east garden", "cafe terrace", "ticket hall", "river walk"),
        (0.15, 0.20, 0.35)),
    Domain("Guidebook", "trail", ("route", "path"), (
        M("trail length", ("route distance", "length of the route"), "kilometres", 2, 60),
        M("elevation gain", ("total climb", "height gained"), "metres", 50, 2500),
        M("walking time", ("hiking time", "time on foot"), "hours", 1, 14),
        M("annual hikers", ("yearly walkers", "hikers per year"), "thousand hikers", 1, 300),
    ), ("weather", "equipment", "camping", "wildlife", "permits", "water sources", "navigation",
        "first aid", "shelters", "viewpoints", "river crossings", "seasons", "transport", "maps",
        "ridges", "forests", "lakes", "villages", "huts", "passes"),
        "route map", ("summit hut", "north trailhead", "lookout tower", "spring", "ranger post"),
        (0.20, 0.20, 0.30)),
    Domain("Government", "district", ("agency area", "administrative district"), (
        M("budget allocation", ("funding", "appropriation"), "million dollars", 5, 800),
        M("households served", ("families reached", "homes assisted"), "households", 500, 90000),
        M("staff vacancies", ("unfilled posts", "open positions"), "posts", 5, 900),
        M("processing time", ("waiting time", "turnaround time"), "days", 2, 120),
        M("complaints received", ("grievances filed", "complaints lodged"), "complaints", 20, 5000),
    ), ("policy", "oversight", "procurement", "welfare", "housing", "transport", "public health",
        "consultation", "regulation", "infrastructure", "grants", "reporting", "accountability",
        "planning", "services", "licensing", "pensions", "schools", "roads", "inspections"),
        "service map", ("central office", "mobile unit", "help desk", "records archive", "field office"),
        (0.35, 0.25, 0.10)),
    Domain("Laws", "court", ("tribunal", "jurisdiction"), (
        M("cases filed", ("lawsuits lodged", "claims brought"), "cases", 100, 20000),
        M("fines collected", ("penalties levied", "penalty revenue"), "thousand dollars", 10, 9000),
        M("appeal rate", ("share appealed", "appeals ratio"), "percent", 2, 40),
        M("median delay", ("typical delay", "middle waiting period"), "weeks", 2, 90),
    ), ("statute", "liability", "contracts", "enforcement", "jurisdiction", "evidence", "procedure",
        "sentencing", "precedent", "amendments", "definitions", "obligations", "remedies", "notices",
        "exemptions", "licences", "disputes", "compliance", "penalties", "hearings"),
        "procedure chart", ("filing office", "mediation step", "hearing room", "appeal panel", "registry"),
        (0.30, 0.15, 0.05)),
    Domain("News", "city", ("town", "municipality"), (
        M("attendance", ("turnout", "crowd size"), "people", 500, 90000),
        M("donations", ("contributions", "money given"), "thousand dollars", 5, 900),
        M("rainfall", ("precipitation", "rain total"), "millimetres", 10, 400),
        M("new businesses", ("start-ups registered", "firms founded"), "businesses", 5, 900),
    ), ("festival", "council", "elections", "schools", "storm", "housing", "transport", "sports",
        "markets", "protests", "tourism", "culture", "crime", "hospitals", "bridges", "jobs",
        "parks", "libraries", "museums", "harbour"),
        "city map", ("old bridge", "market square", "stadium", "harbour gate", "town hall"),
        (0.15, 0.30, 0.25)),
)
# fmt: on

DOMAIN_NAMES = tuple(d.name for d in DOMAINS)

FILLER_TEMPLATES = (
    "{T1} remained a central concern for every {kind} during the period under review.",
    "The report links changes in {t1} to decisions on {t2}.",
    "Further detail on {t1} and {t2} is given in the following sections.",
    "Several {kind}s revised their approach to {t1} after the review of {t2}.",
    "{T1} is discussed together with {t2} because the two are closely related.",
    "No single {kind} accounted for most of the attention paid to {t1}.",
    "The notes on {t1} should be read alongside the material on {t2}.",
    "Changes to {t1} were gradual, while {t2} moved more quickly.",
    "The committee asked for clearer reporting on {t1}.",
    "Questions about {t1} were raised at the annual meeting and answered in writing.",
)
FACT_TEMPLATES = (
    "In {year}, the {metric} of the {name} {kind} {verb} {value} {unit}.",
    "The {name} {kind} {verb} {metric} of {value} {unit} in {year}.",
    "For {year}, {metric} at the {name} {kind} {verb} {value} {unit}.",
)
FACT_VERBS = ("reached", "stood at", "came to", "totalled")
HEADING_TEMPLATES = ("{T1} and {t2}", "Review of {t1}", "{T1}: an overview", "Notes on {t1} and {t2}")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40), "blue": (31, 119, 180), "green": (44, 160, 44), "orange": (255, 127, 14),
    "purple": (148, 103, 189), "brown": (140, 86, 75), "pink": (227, 119, 194), "grey": (110, 110, 110),
}  # fmt: skip
MARKER_SHAPES = ("circle", "square", "triangle", "diamond")

_SYLLABLES = (
    "val", "mor", "kes", "trin", "lind", "bra", "den", "cal", "vik", "sel", "tor", "dra", "mel",
    "fen", "gar", "ros", "tal", "vey", "quin", "har", "zel", "cor", "bel", "nor", "wen", "ash",
    "pel", "rin", "sto", "mar", "lu", "ka", "do", "ve", "ri", "sa", "no", "te",
)  # fmt: skip


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def make_names(n: int, rng: np.random.Generator, taken: set[str] | None = None) -> list[str]:
    """n distinct made-up proper names of two or three syllables ("Valmora", "Kestrinel")."""
    taken = set() if taken is None else taken
    out: list[str] = []
    while len(out) < n:
        k = 2 if rng.random() < 0.7 else 3
        name = cap("".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), k)))
        if len(name) >= 5 and name not in taken:
            taken.add(name)
            out.append(name)
    return out


def pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(0, len(seq)))]


def format_value(v: float) -> str:
    """Numbers as printed: integers above 100, one decimal below, with thousands separators."""
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


# ----------------------------------------------------------------------------------------------
# Paraphrase: what makes a question more than a copy of the sentence it is about

_DROPPABLE = {"the", "of", "for", "at", "a"}


def metric_as_asked(m: Metric, rng: np.random.Generator, p_synonym: float = 0.65) -> str:
    """A synonym most of the time; otherwise the printed name, sometimes shortened to one word."""
    if rng.random() < p_synonym:
        return pick(rng, m.synonyms)
    words = m.name.split()
    if len(words) > 1 and rng.random() < 0.4:
        return words[int(rng.integers(0, len(words)))]
    return m.name


def drop_words(question: str, rng: np.random.Generator, p: float = 0.25) -> str:
    """Drop a few function words, as terse real queries do; keeps the question mark."""
    words = question.rstrip("?").split()
    kept = [w for i, w in enumerate(words) if i == 0 or w.lower() not in _DROPPABLE or rng.random() > p]
    return " ".join(kept) + "?"


# ----------------------------------------------------------------------------------------------
# OCR noise: confusions a real OCR engine makes on small print

_CONFUSIONS = (
    ("rn", "m"), ("m", "rn"), ("l", "1"), ("I", "l"), ("O", "0"), ("o", "0"), ("e", "c"), ("a", "o"),
    ("h", "b"), ("S", "5"), ("B", "8"), ("i", "l"), ("cl", "d"), ("u", "v"), ("t", "f"), ("g", "q"),
)  # fmt: skip


def _garble_word(w: str, rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.6:
        options = [(a, b) for a, b in _CONFUSIONS if a in w]
        if options:
            a, b = options[int(rng.integers(0, len(options)))]
            i = w.find(a)
            return w[:i] + b + w[i + len(a) :]
    if r < 0.8 and len(w) > 3:
        i = int(rng.integers(1, len(w) - 1))
        return w[:i] + w[i + 1 :]  # a lost character
    if len(w) >= 8:
        i = int(rng.integers(4, len(w) - 3))
        return w[:i] + " " + w[i:]  # a split word (both parts of four letters or more)
    return w


def ocr_noise(text: str, rng: np.random.Generator, p: float) -> str:
    """Each word is garbled with probability p; whitespace collapses to single spaces."""
    words = text.split()
    hit = rng.random(len(words)) < p
    return " ".join(_garble_word(w, rng) if h else w for w, h in zip(words, hit, strict=True))
