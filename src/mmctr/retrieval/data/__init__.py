"""Track 1 data: the real formats and a generator with known answers.

    load(root)        the files under root (challenge, PreFLMR, ViDoRe or generator layout) -> Track1Data
    load_train(root)  the generator's train split, gold filled
    load_truth(root)  the generator's answer key (truth/), never read by a retriever
    synth.generate    writes a data root (imported from mmctr.retrieval.data.synth)

formats.py names every real file and column; read_*.py read them with errors that name the file,
column and row; types.py holds what they return.
"""

from __future__ import annotations

from mmctr.retrieval.data.readers import load, load_train
from mmctr.retrieval.data.truth import Truth, load_truth
from mmctr.retrieval.data.types import (
    M2KR_KINDS,
    DocPages,
    DocQuestion,
    DocSet,
    ImageQuery,
    Passages,
    PassageSet,
    Track1Data,
)

__all__ = [
    "M2KR_KINDS",
    "DocPages",
    "DocQuestion",
    "DocSet",
    "ImageQuery",
    "PassageSet",
    "Passages",
    "Track1Data",
    "Truth",
    "load",
    "load_train",
    "load_truth",
]
