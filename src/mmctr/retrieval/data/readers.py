"""`load(root)`: find which Track 1 layout a folder holds and read it into Track1Data.

Layouts recognised, in this order:
- a data root with `MMDocIR/` and/or `M2KR/` (or the hub's `MMDocIR-Challenge/`, `M2KR-Challenge/`):
  the generator's output and the challenge's files arranged the same way;
- an MMDocIR folder (`MMDocIR_gt_remove.jsonl` + `MMDocIR_doc_passages.parquet`, or the evaluation
  release's `MMDocIR_annotations.jsonl` + `MMDocIR_pages.parquet`);
- an M2KR-Challenge folder (`challenge_data/`, `challenge_passage/`, image folders);
- a PreFLMR M2KR folder (`<NAME>_data/` + `<NAME>_passages/`);
- ViDoRe in its BEIR layout (`corpus/`, `queries/`, `qrels/`) or QA layout (parquet shards with
  `query`, `image`, `image_filename`), or one such parquet file.
Gold is filled only from the data files themselves, never from a generator's truth/ folder.
"""

from __future__ import annotations

from pathlib import Path

from mmctr.errors import DataError
from mmctr.retrieval.data import formats as F
from mmctr.retrieval.data.read_m2kr import preflmr_subsets, read_m2kr_challenge, read_preflmr
from mmctr.retrieval.data.read_mmdocir import read_mmdocir
from mmctr.retrieval.data.read_vidore import looks_like_qa, read_vidore_beir, read_vidore_qa, shards
from mmctr.retrieval.data.types import PassageSet, Track1Data

_EXPECTED = (
    "expected one of: MMDocIR/ and/or M2KR/ folders (generator or challenge layout); "
    f"{F.MMDOCIR_QUESTIONS} + {F.MMDOCIR_PAGES}; challenge_data/ + challenge_passage/ (M2KR-Challenge); "
    "<NAME>_data/ + <NAME>_passages/ (PreFLMR M2KR); corpus/ + queries/ + qrels/ (ViDoRe BEIR); "
    "parquet files with query, image, image_filename (ViDoRe QA)"
)


def _sub(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _is_mmdocir(d: Path) -> bool:
    names = (F.MMDOCIR_QUESTIONS, F.MMDOCIR_PAGES, F.MMDOCIR_EVAL_PAGES, F.MMDOCIR_ANNOTATIONS)
    return any((d / n).exists() for n in names)


def _is_m2kr_challenge(d: Path) -> bool:
    return (d / "challenge_data").is_dir() or (d / "challenge_passage").is_dir()


def _is_beir(d: Path) -> bool:
    return all((d / n).is_dir() for n in F.VIDORE_BEIR_DIRS)


def what_is(d: Path) -> str | None:
    """A short name of the layout at d, or None (used for hints; reads no data)."""
    if not d.is_dir():
        return None
    if _sub(d, F.MMDOCIR_DIR_NAMES) or _sub(d, F.M2KR_DIR_NAMES):
        return "Track 1 data root"
    if _is_mmdocir(d):
        return "MMDocIR folder"
    if _is_m2kr_challenge(d):
        return "M2KR-Challenge folder"
    if preflmr_subsets(d):
        return "PreFLMR M2KR folder"
    if _is_beir(d):
        return "ViDoRe BEIR folder"
    return None


def _read_m2kr_folder(d: Path, subset: str | None, split: str, image_root: Path | None) -> PassageSet:
    if _is_m2kr_challenge(d):
        return read_m2kr_challenge(d)
    if preflmr_subsets(d):
        return read_preflmr(d, subset, split, image_root)
    raise DataError(
        d / F.M2KR_QUERIES,
        None,
        "file not found; an M2KR folder holds challenge_data/ and challenge_passage/",
    )


def load(
    root: Path, *, subset: str | None = None, split: str = "test", image_root: Path | None = None
) -> Track1Data:
    """Read the Track 1 data under root. `subset`, `split`, `image_root` matter only for PreFLMR
    M2KR (which sub-set, which split, where its images are) and ViDoRe (which split)."""
    root = Path(root)
    if not root.exists():
        raise DataError(root, None, "not found")
    if root.is_file():
        if root.suffix == ".parquet" and looks_like_qa([root]):
            docs, extra = read_vidore_qa([root], f"vidore:{root.stem}")
            return Track1Data(docs, None, root, {"layout": "vidore-qa", **extra})
        raise DataError(root, None, f"is a file; point at a data folder ({_EXPECTED})")

    mm, m2 = _sub(root, F.MMDOCIR_DIR_NAMES), _sub(root, F.M2KR_DIR_NAMES)
    if mm or m2:
        docs = read_mmdocir(mm) if mm else None
        passages = _read_m2kr_folder(m2, subset, split, image_root) if m2 else None
        return Track1Data(docs, passages, root, {"layout": "challenge"})
    if _is_mmdocir(root):
        return Track1Data(read_mmdocir(root), None, root, {"layout": "mmdocir"})
    if _is_m2kr_challenge(root):
        return Track1Data(None, read_m2kr_challenge(root), root, {"layout": "m2kr-challenge"})
    if preflmr_subsets(root):
        return Track1Data(None, read_preflmr(root, subset, split, image_root), root, {"layout": "preflmr"})
    if _is_beir(root):
        docs, extra = read_vidore_beir(root, f"vidore:{root.name}", split)
        return Track1Data(docs, None, root, {"layout": "vidore-beir", **extra})
    files = shards(root, split)
    if files and looks_like_qa(files):
        docs, extra = read_vidore_qa(files, f"vidore:{root.name}")
        return Track1Data(docs, None, root, {"layout": "vidore-qa", **extra})

    for parent in (root.parent, root.parent.parent):
        kind = what_is(parent)
        if kind and parent != root:
            raise DataError(
                root,
                None,
                f"holds no Track 1 data; it is a sub-folder of {parent}, a {kind}: point at {parent}",
            )
    raise DataError(root, None, f"holds no Track 1 data; {_EXPECTED}")


def load_train(root: Path) -> Track1Data:
    """The generator's train split (root/train/), gold filled from its files."""
    path = Path(root) / "train"
    if not path.is_dir():
        raise DataError(
            path, None, "not found; only the generator writes a train split (the challenge has none)"
        )
    data = load(path)
    for part, name in ((data.docs, "MMDocIR"), (data.passages, "M2KR")):
        if part is not None and not part.gold:
            raise DataError(path / name, None, "has no gold in its files; a train split needs it")
    return data
