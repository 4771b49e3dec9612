"""What Track 1's readers return and its retrievers consume: typed, columnar, format-free.

Every reader (the challenge's MMDocIR and M2KR files, PreFLMR's M2KR, ViDoRe QA/BEIR, the
generator's output) produces these, so a retriever never sees a file layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The three kinds of M2KR-Challenge query (rows 0-1399, 1400-4414, 4415-6414 of the real file).
M2KR_KINDS = ("image", "image_question", "wit")


@dataclass
class DocQuestion:
    question_id: str
    question: str
    doc_name: str
    domain: str = ""


@dataclass
class DocPages:
    """MMDocIR: every page of every document, one row each. `page_id` is the page's 0-based
    position inside its document, as a string (the challenge's `passage_id`)."""

    doc_name: list[str]
    page_id: list[str]
    ocr_text: list[str]
    vlm_text: list[str]
    # JPEG/PNG bytes of row i; a function so that 20k page images need not sit in memory at once.
    image: Callable[[int], bytes | None]

    def __len__(self) -> int:
        return len(self.page_id)

    def rows_of(self) -> dict[str, list[int]]:
        """doc_name -> its rows, in page order."""
        out: dict[str, list[int]] = {}
        for i, d in enumerate(self.doc_name):
            out.setdefault(d, []).append(i)
        return out


@dataclass
class DocSet:
    """Sub-task 1 (MMDocIR page retrieval; ViDoRe loads into the same shape with one document
    holding the whole page pool). The candidates of a question are the pages of its document."""

    questions: list[DocQuestion]
    pages: DocPages
    source: str = ""  # file or directory read, for messages
    gold: dict[str, list[str]] | None = None  # question_id -> gold page ids, when the files have them
    kind: dict[str, str] = field(default_factory=dict)  # question_id -> text/table/chart/figure, when known


@dataclass
class ImageQuery:
    question_id: str
    question: str  # "" for image-only queries
    instruction: str
    image_path: Path | None
    kind: str = ""  # one of M2KR_KINDS when known


@dataclass
class Passages:
    passage_id: list[str]
    text: list[str]
    screenshot: list[Path | None]  # page screenshot of the passage (M2KR-Challenge), else None

    def __len__(self) -> int:
        return len(self.passage_id)


@dataclass
class PassageSet:
    """Sub-task 2 (M2KR): image or image+question queries over one passage pool."""

    queries: list[ImageQuery]
    passages: Passages
    source: str = ""
    gold: dict[str, list[str]] | None = None  # question_id -> positive passage ids, when known


@dataclass
class Track1Data:
    """Both sub-tasks of one data root; either may be absent (a ViDoRe set has no M2KR part)."""

    docs: DocSet | None
    passages: PassageSet | None
    root: Path
    extra: dict = field(default_factory=dict)
