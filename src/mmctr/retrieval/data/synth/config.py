"""Sizes of a generated Track 1 data set, each stated once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DocScale:
    """MMDocIR-like part: documents of rendered pages and questions about them."""

    n_docs: int
    mean_pages: float  # pages per document are lognormal around this, clipped to [min_pages, max_pages]
    min_pages: int
    max_pages: int
    n_questions: int
    page_size: tuple[int, int]  # (width, height) of a page image in pixels
    font_size: int
    total_pages: int = 0  # when > 0, page counts are rescaled to sum to exactly this (the real 20,395)


@dataclass(frozen=True)
class PassageScale:
    """M2KR-like part: entities with photos, passages with screenshots, image queries."""

    n_passages: int
    n_queries: int
    scene_size: int  # side of an entity's hidden full scene; photos are views cropped from it
    photo_size: int  # longer side of a query photo
    screenshot_size: tuple[int, int]
    font_size: int


@dataclass(frozen=True)
class Scale:
    docs: DocScale
    passages: PassageScale
    train_docs: DocScale
    train_passages: PassageScale


def _doc(n_docs, mean, lo, hi, n_q, size, font, total=0) -> DocScale:
    return DocScale(n_docs, mean, lo, hi, n_q, size, font, total)


def _psg(n_p, n_q, scene, photo, shot, font) -> PassageScale:
    return PassageScale(n_p, n_q, scene, photo, shot, font)


SCALE_CONFIGS: dict[str, Scale] = {
    # Tests: a few seconds on one core.
    "tiny": Scale(
        docs=_doc(4, 8, 6, 10, 40, (360, 466), 10),
        passages=_psg(40, 40, 128, 96, (280, 380), 10),
        train_docs=_doc(2, 8, 6, 10, 16, (360, 466), 10),
        train_passages=_psg(24, 16, 128, 96, (280, 380), 10),
    ),
    # The demo: a few thousand pages and passages in under two minutes on two cores.
    "small": Scale(
        docs=_doc(48, 40, 12, 90, 300, (480, 620), 11),
        passages=_psg(2_000, 1_000, 288, 224, (400, 560), 11),
        train_docs=_doc(16, 40, 12, 90, 120, (480, 620), 11),
        train_passages=_psg(600, 300, 288, 224, (400, 560), 11),
    ),
    # The real counts: 313 documents, 20,395 pages, 1,658 questions; 6,415 M2KR queries. The
    # challenge's passage count is not published; 20,000 is an assumption (the HF card says 10K-100K rows).
    "full": Scale(
        docs=_doc(313, 65.1, 8, 400, 1_658, (612, 792), 12, total=20_395),
        passages=_psg(20_000, 6_415, 320, 256, (480, 680), 12),
        train_docs=_doc(100, 65.1, 8, 400, 500, (612, 792), 12),
        train_passages=_psg(5_000, 2_000, 320, 256, (480, 680), 12),
    ),
}

SCALES = tuple(SCALE_CONFIGS)  # ("tiny", "small", "full")

# Shares of the question kinds. MMDocIR's own split (text 44.7%, table 37.4%, image 21.7%, with
# overlaps) rounded into four exclusive kinds; 313 of 1,658 questions have several gold pages.
DOC_KIND_SHARES = {"text": 0.40, "table": 0.25, "chart": 0.20, "figure": 0.15}
TWO_GOLD_SHARE = 313 / 1_658
# M2KR-Challenge rows 0-1399 / 1400-4414 / 4415-6414.
M2KR_KIND_SHARES = {"image": 1_400 / 6_415, "image_question": 3_015 / 6_415, "wit": 2_000 / 6_415}
MULTI_PASSAGE_SHARE = 0.12  # entities whose article is split into two passages (two gold ids)
