"""The M2KR-like world as plain data: entities, their passages and the image queries about them.

An entity (a person, a landmark, a bird, a locomotive, ...) has a visual identity - a palette, a
shape, a texture and a scatter of small marks of its own - from which every photo of it is drawn
(photos.py). Entities come in families of look-alikes that share palette, shape, texture and kind of
thing, and differ in their marks, name, region and year; so a global image embedding confuses a
family, instance-level matching (local features) separates it, and a question's loose words ("this
reddish tower") narrow it down without settling it.

Each entity has a passage (a few have two: their article split in sections) whose page screenshot
shows photo 0 of the entity; a query shows another photo (another crop, scale and colour shift).
Query kinds and sources follow M2KR-Challenge: person photos without a question (KVQA-like),
photo + question (E-VQA / OVEN / Infoseek / OKVQA-like), and WIT-like "find the document that
accompanies this image".
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from mmctr.retrieval.data.formats import PERSON_INSTRUCTIONS, QUESTION_INSTRUCTIONS, WIT_INSTRUCTIONS
from mmctr.retrieval.data.synth.config import M2KR_KIND_SHARES, MULTI_PASSAGE_SHARE, PassageScale
from mmctr.retrieval.data.synth.text import cap, make_names, pick

ENTITY_SALT = 0xE171
SHAPES = ("circle", "square", "triangle", "ring", "cross", "diamond", "tower", "arch")
TEXTURES = ("noise", "gradient", "dots", "stripes")
SHAPE_WORDS = {
    "circle": "rounded", "square": "boxy", "triangle": "pointed", "ring": "ringed", "cross": "cross-shaped",
    "diamond": "angular", "tower": "tall", "arch": "arched", "portrait": "",
}  # fmt: skip
TEXTURE_WORDS = {"noise": "speckled", "gradient": "shaded", "dots": "dotted", "stripes": "striped"}
# What a question may call a colour instead of its name.
COLOUR_SYNONYMS = {
    "red": ("reddish", "red"), "orange": ("orange", "amber"), "yellow": ("yellow", "golden"),
    "green": ("green", "greenish"), "teal": ("teal", "blue-green"), "blue": ("blue", "bluish"),
    "purple": ("purple", "violet"), "pink": ("pink", "rose-coloured"),
}  # fmt: skip

# source -> kinds of thing it covers; KVQA holds the people.
SUBCATS: dict[str, tuple[str, ...]] = {
    "KVQA": ("painter", "politician", "athlete", "singer", "scientist", "actor", "poet", "architect"),
    "EVQA": (
        "tower",
        "bridge",
        "temple",
        "castle",
        "lighthouse",
        "songbird",
        "beetle",
        "lizard",
        "orchid",
        "fern",
    ),
    "OVEN": ("aircraft", "locomotive", "steamship", "motorcar", "tram"),
    "INFOSEEK": ("mountain", "lake", "waterfall", "island", "glacier"),
    "OKVQA": ("dish", "instrument", "tool", "garment"),
}
QUESTION_SOURCES = ("EVQA", "OVEN", "INFOSEEK", "OKVQA")
REGIONS = (
    "the Varn valley", "the Ostmere coast", "the Halden plateau", "the Brisk islands", "the Quell delta",
    "the Tarrow hills", "the Sennet basin", "the Corran steppe", "the Ilse lowlands", "the Marrow fjords",
    "the Dunhollow moors", "the Yarrin highlands", "the Pelt marshes", "the Ashby downs", "the Kell lakes",
    "the Rennick forest", "the Wyre estuary", "the Fallow plains", "the Orme peninsula", "the Tessel ridge",
)  # fmt: skip
KNOWN_FOR = (
    "a long public record", "an annual festival", "its unusual construction", "a famous restoration",
    "early photographs", "a disputed origin", "a local legend", "its role in trade", "a rare variety",
    "a widely copied design", "a celebrated rescue", "a series of awards",
)  # fmt: skip


@dataclass(frozen=True)
class Look:
    hue: float  # background hue; the foreground is the opposite hue
    sat: float
    dark: bool
    shape: str  # "portrait" for people
    texture: str

    @property
    def bg(self) -> tuple[int, int, int]:
        r, g, b = colorsys.hsv_to_rgb(self.hue, self.sat, 0.35 if self.dark else 0.85)
        return int(r * 255), int(g * 255), int(b * 255)

    @property
    def fg(self) -> tuple[int, int, int]:
        r, g, b = colorsys.hsv_to_rgb((self.hue + 0.5) % 1.0, 0.75, 0.95 if self.dark else 0.45)
        return int(r * 255), int(g * 255), int(b * 255)


def colour_word(hue: float) -> str:
    """The everyday name of the object's (foreground) colour."""
    h = ((hue + 0.5) % 1.0) * 360
    for limit, name in ((15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (195, "teal"),
                        (255, "blue"), (290, "purple"), (335, "pink"), (361, "red")):  # fmt: skip
        if h < limit:
            return name
    return "red"


@dataclass
class Entity:
    index: int
    name: str
    source: str  # passage-id prefix: WIT, KVQA, EVQA, OVEN, INFOSEEK, OKVQA
    subcat: str
    family: int
    look: Look
    region: str
    year: int
    known_for: str
    passages: list[str] = field(default_factory=list)  # passage ids, filled when ids are assigned
    screenshot: str = ""  # path relative to the screenshot folder

    @property
    def colour(self) -> str:
        return colour_word(self.look.hue)

    @property
    def is_person(self) -> bool:
        return self.look.shape == "portrait"


@dataclass
class PassageSpec:
    passage_id: str
    entity: int
    text: str


@dataclass
class QuerySpec:
    question_id: str
    kind: str
    entity: int
    view: int  # which photo of the entity (>= 1; photo 0 is in the screenshot)
    question: str
    instruction: str
    img_path: str  # relative to the query image folder


def _entity_text(e: Entity, section: int) -> str:
    """passage_content in PreFLMR's "title: ... content: ..." form."""
    if e.is_person:
        if section == 0:
            body = (
                f"{e.name} (born {e.year}) is a {e.subcat} from {e.region}. {e.name} is best known for "
                f"{e.known_for}. Portraits usually show {e.name} in {e.colour} clothing against a "
                f"{TEXTURE_WORDS[e.look.texture]} background."
            )
        else:
            body = (
                f"Career. {e.name} began working as a {e.subcat} in {e.year + 20} and later returned to "
                f"{e.region}, where {e.known_for} is still remembered."
            )
    else:
        shape = SHAPE_WORDS[e.look.shape]
        if section == 0:
            body = (
                f"{e.name} is a {e.colour} {shape} {e.subcat} in {e.region}, first recorded in {e.year}. "
                f"It is known for {e.known_for} and for its {TEXTURE_WORDS[e.look.texture]} surface. "
                f"Visitors and observers describe the {e.subcat} as {e.colour} and {shape}."
            )
        else:
            body = (
                f"History. Records of {e.name} before {e.year} are scarce; the {e.subcat} became widely "
                f"known in {e.region} after {e.known_for} drew attention to it."
            )
    return f"title: {e.name} content: {body}"


def _question(e: Entity, rng: np.random.Generator) -> str:
    """Loose words about the entity: the kind of thing and its colour (both shared with its
    look-alikes), sometimes the region; never the name."""
    colour = pick(rng, COLOUR_SYNONYMS[e.colour])
    hint = f" in {e.region}" if rng.random() < 0.35 else ""
    t = pick(rng, (
        "When was this {c} {s}{h} first recorded?",
        "What is this {c} {s}{h} known for?",
        "Where can this {c} {s} be found?",
        "What is the history of this {c} {s}{h}?",
    ))  # fmt: skip
    return t.format(c=colour, s=e.subcat, h=hint)


def _family_sizes(n: int, rng: np.random.Generator) -> list[int]:
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(pick(rng, (1, 2, 2, 3, 3, 4))))
    sizes[-1] -= sum(sizes) - n
    return [s for s in sizes if s > 0]


def plan_world(
    scale: PassageScale, seed: int, split: int
) -> tuple[list[Entity], list[PassageSpec], list[QuerySpec]]:
    rng = np.random.default_rng([seed, ENTITY_SALT, split])
    n_entities = max(3, round(scale.n_passages / (1 + MULTI_PASSAGE_SHARE)))
    kinds = list(M2KR_KIND_SHARES)
    q_counts = np.floor(np.array(list(M2KR_KIND_SHARES.values())) * scale.n_queries).astype(int)
    q_counts[1] += scale.n_queries - q_counts.sum()
    e_counts = np.maximum(1, np.round(np.array(list(M2KR_KIND_SHARES.values())) * n_entities)).astype(int)
    e_counts[1] = max(1, n_entities - e_counts[0] - e_counts[2])

    names = make_names(int(e_counts.sum()), rng)
    entities: list[Entity] = []
    family = 0
    for kind, n_e in zip(kinds, e_counts.tolist(), strict=True):
        for size in _family_sizes(n_e, rng):
            if kind == "image":
                source = "KVQA"
            elif kind == "wit":
                source = "WIT"
            else:
                source = str(pick(rng, QUESTION_SOURCES))
            subcats = SUBCATS[source] if source != "WIT" else sum((SUBCATS[s] for s in QUESTION_SOURCES), ())
            subcat = str(pick(rng, subcats))
            hue = float(rng.random())
            shape = "portrait" if source == "KVQA" else str(pick(rng, SHAPES))
            base = Look(
                hue, float(rng.uniform(0.45, 0.8)), bool(rng.random() < 0.5), shape, str(pick(rng, TEXTURES))
            )
            for _ in range(size):
                # Look-alikes: the family's look with a small hue jitter; everything else their own.
                look = Look(
                    (base.hue + rng.normal(0, 0.012)) % 1.0, base.sat, base.dark, base.shape, base.texture
                )
                entities.append(
                    Entity(
                        index=len(entities),
                        name=names[len(entities)],
                        source=source,
                        subcat=subcat,
                        family=family,
                        look=look,
                        region=str(pick(rng, REGIONS)),
                        year=int(rng.integers(1820, 2015)),
                        known_for=str(pick(rng, KNOWN_FOR)),
                    )
                )
            family += 1

    # Passages: one per entity, two for some; ids carry the source prefix and are numbered in a
    # shuffled order, so neither an id nor a row position says which entity a passage is about.
    specs: list[tuple[int, int]] = []
    for e in entities:
        specs.append((e.index, 0))
        if rng.random() < MULTI_PASSAGE_SHARE:
            specs.append((e.index, 1))
    order = rng.permutation(len(specs))
    counters: dict[str, int] = {}
    passages: list[PassageSpec] = []
    for i in order.tolist():
        ent, section = specs[i]
        e = entities[ent]
        n = counters.get(e.source, 0)
        counters[e.source] = n + 1
        pid = f"{e.source}_{n}"
        e.passages.append(pid)
        passages.append(PassageSpec(pid, ent, _entity_text(e, section)))
    for k, i in enumerate(rng.permutation(len(entities)).tolist()):
        entities[i].screenshot = f"page_{k:06d}.jpg"

    # Queries, in the real file's order: person photos, photo + question, WIT-like.
    by_kind = {
        "image": [e.index for e in entities if e.source == "KVQA"],
        "image_question": [e.index for e in entities if e.source in QUESTION_SOURCES],
        "wit": [e.index for e in entities if e.source == "WIT"],
    }
    views: dict[int, int] = {}
    queries: list[QuerySpec] = []
    for kind, n_q in zip(kinds, q_counts.tolist(), strict=True):
        pool = by_kind[kind]
        # About 1.2 queries per queried entity; the rest of the pool are distractors.
        n_target = max(1, min(len(pool), int(np.ceil(n_q / 1.2))))
        targets = [pool[i] for i in rng.permutation(len(pool))[:n_target]]
        picks = targets + [targets[i] for i in rng.integers(0, len(targets), max(0, n_q - len(targets)))]
        picks = [picks[i] for i in rng.permutation(len(picks))][:n_q]
        for ent in picks:
            e = entities[ent]
            views[ent] = views.get(ent, 0) + 1
            qid = str(len(queries))
            if kind == "image":
                question, instruction = "", str(pick(rng, PERSON_INSTRUCTIONS))
            elif kind == "wit":
                question, instruction = "", str(pick(rng, WIT_INSTRUCTIONS))
            else:
                question, instruction = _question(e, rng), str(pick(rng, QUESTION_INSTRUCTIONS))
            queries.append(
                QuerySpec(qid, kind, ent, views[ent], question, instruction, f"{e.source}/{qid}.jpg")
            )
    return entities, passages, queries


def entity_summary(e: Entity) -> str:
    return f"{cap(e.colour)} {e.subcat} {e.name} ({e.source}, family {e.family})"
