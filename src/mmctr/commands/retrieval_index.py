"""`mmctr retrieval index` and `mmctr retrieval search`: the persistent index (build, add, delete)
and searching it. Part of `mmctr retrieval` (commands/retrieval.py adds these subcommands)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmctr.errors import ConfigError


def add_index(rsub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    from mmctr.retrieval.index.vectors import KINDS

    p = rsub.add_parser(
        "index",
        help="build a persistent index (of a data root, a folder of PDFs or of page images), or update one",
        description="Build an index directory: MiniLM vectors of every page's text and EfficientNet-Lite0 "
        "vectors of the page image and its crops, in FAISS stores. PDFs are rendered page by page "
        "(pypdfium2) and read by their text layer or, for scans, by OCR (rapidocr, offline). "
        "With --index, --add appends pages and --delete removes documents in place, without re-encoding "
        "what is there. With --run, the index stores a run's candidate-tower vectors instead, and "
        "`mmctr retrieval search` queries them with its query tower (the index records the run): a "
        "two-tower run (`mmctr retrieval train`) or a distilled one (`mmctr retrieval distill`: one "
        "student vector per page from its token vectors; text only, no image search).",
        formatter_class=fmt,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, help="a Track-1 data root (MMDocIR pages and M2KR passages)")
    src.add_argument("--pdf", type=Path, help="a folder of PDF files (searched recursively)")
    src.add_argument("--images", type=Path, help="a folder of page images (PNG, JPEG, ...), read by OCR")
    p.add_argument("--out", type=Path, help="index directory to build (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier index")
    p.add_argument("--index", type=Path, help="an existing index to update with --add / --delete")
    p.add_argument(
        "--add", type=Path, help="with --index: a folder of PDFs, of images, or a data root to add"
    )
    p.add_argument(
        "--delete", nargs="+", metavar="DOC", help="with --index: documents (or page ids) to remove"
    )
    p.add_argument("--kind", default="flat", choices=KINDS, help="FAISS store kind for a new index")
    p.add_argument(
        "--run",
        type=Path,
        help="a new index of a run's tower vectors (`mmctr retrieval train --out RUN`, or `mmctr "
        "retrieval distill --out RUN`: text only); searches and updates then use that run, which "
        "must stay where it is, unchanged",
    )
    p.add_argument(
        "--doc-text",
        choices=("vlm", "ocr", "both"),
        help="MMDocIR page text used (--data, --add); default: a distilled run's own, else vlm",
    )
    p.add_argument(
        "--text-only", action="store_true", help="a new index without image vectors (faster; no image search)"
    )
    p.add_argument("--cache-dir", type=Path, help="embedding cache (default $MMCTR_CACHE or ~/.cache/mmctr)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(_retrieval_run=run_index)


def add_search(rsub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    p = rsub.add_parser(
        "search",
        help="search an index with a text query, an image, or both",
        description="Print the best pages / passages of an index for a query, with their scores and "
        "where they came from (file and page, or data file and row).",
        formatter_class=fmt,
    )
    p.add_argument("--index", type=Path, required=True, help="index directory (`mmctr retrieval index`)")
    p.add_argument("--query", help="text query")
    p.add_argument("--image", type=Path, help="query image file")
    p.add_argument("-k", type=int, default=5, help="results to print")
    p.add_argument("--json", action="store_true", help="print the hits as a JSON list")
    p.add_argument("--cache-dir", type=Path, help="embedding cache (default $MMCTR_CACHE or ~/.cache/mmctr)")
    p.set_defaults(_retrieval_run=run_search)


def _records(path: Path, doc_text: str):
    """Records of a folder: a data root, a folder of PDFs, or one of images (what it holds decides)."""
    from mmctr.retrieval.index.sources import IMAGE_SUFFIXES, from_data_root, from_images, from_pdfs

    if (path / "MMDocIR").is_dir() or (path / "M2KR").is_dir():
        return from_data_root(path, doc_text)
    if any(p.suffix.lower() == ".pdf" for p in path.rglob("*")):
        return from_pdfs(path)
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*")):
        return from_images(path)
    return from_data_root(path, doc_text)  # names what is missing


def run_index(args: argparse.Namespace) -> int:
    import time

    from mmctr.outputs import check_out
    from mmctr.retrieval.index.sources import from_data_root, from_images, from_pdfs
    from mmctr.retrieval.index.store import INDEX_DIR, DocumentIndex

    progress = not args.no_progress
    if args.index is not None:
        if args.add is None and not args.delete:
            raise ConfigError("--index updates an index: give --add FOLDER and/or --delete DOC ...")
        if args.run is not None:
            raise ConfigError(
                f"--run is for a new index; {args.index} keeps the run it was built with "
                "(its manifest.json names it): rebuild with --out and --run to change it"
            )
        t0 = time.perf_counter()
        index = DocumentIndex.load(args.index, cache_dir=args.cache_dir, progress=progress)
        doc_text = args.doc_text or index.options.doc_text
        added = index.add(_records(args.add, doc_text)) if args.add is not None else 0
        deleted = index.delete(args.delete) if args.delete else 0
        index.save(args.index, overwrite=True)
        print(
            f"{args.index}: {added:,} added, {deleted:,} deleted; {index.live:,} live rows "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        return 0
    if args.out is None or (args.data is None and args.pdf is None and args.images is None):
        raise ConfigError("build an index with --data DATA | --pdf DIR | --images DIR and --out INDEX")
    check_out(args.out, INDEX_DIR, args.overwrite)  # before encoding for minutes
    t0 = time.perf_counter()
    index = DocumentIndex(
        args.kind, cache_dir=args.cache_dir, progress=progress, images=not args.text_only, run=args.run
    )
    if args.data is not None:  # a distilled run's page text unless told: what its student learnt on
        records = from_data_root(args.data, args.doc_text or index.options.doc_text)
    elif args.pdf is not None:
        records = from_pdfs(args.pdf)
    else:
        records = from_images(args.images)
    n = index.add(records)
    seconds = time.perf_counter() - t0
    index.save(args.out, overwrite=args.overwrite)
    b = index.manifest()["bytes"]
    print(
        f"{n:,} pages/passages indexed into {args.out} in {seconds:.1f} s ({n / max(seconds, 1e-9):.1f}/s); "
        f"{args.kind} stores: text {b['text'] / 1e6:.2f} MB, image {b['image'] / 1e6:.2f} MB "
        f"({len(index.image_rows):,} windows)"
        + (f"; {'student' if index.distilled else 'tower'} vectors of run {args.run}" if args.run else "")
    )
    return 0


def run_search(args: argparse.Namespace) -> int:
    import time

    from mmctr.errors import DataError
    from mmctr.retrieval.index.store import DocumentIndex, hit_dicts

    if not args.query and args.image is None:
        raise ConfigError("give --query TEXT, --image FILE, or both")
    image = None
    if args.image is not None:
        if not args.image.is_file():
            raise DataError(args.image, None, "--image: file not found")
        image = args.image.read_bytes()
    t0 = time.perf_counter()
    index = DocumentIndex.load(args.index, cache_dir=args.cache_dir)
    load_ms = (time.perf_counter() - t0) * 1000
    t1 = time.perf_counter()
    hits = index.search(args.query, image, args.k)
    search_ms = (time.perf_counter() - t1) * 1000
    if args.json:
        print(json.dumps(hit_dicts(hits), indent=2))
        return 0
    print(f"index loaded in {load_ms:.0f} ms; searched in {search_ms:.0f} ms (model loading included)")
    if index.towers is not None:
        print(f"towers of run {index.towers.path}")
    for h in hits:
        print(f"{h.rank:2d}. {h.score:8.4f}  {h.id}  [{h.matched}]  {h.source}")
        if h.text:
            print(f"      {h.text[:120]}")
    if not hits:
        print("no results: the index is empty")
    return 0
