"""What goes into an index: pages and passages as records, from a Track-1 data root, a folder of
PDFs (each page rendered with pypdfium2; its text layer, or OCR where it has none) or a folder of
page images (OCR). OCR is rapidocr with the weights its wheel ships, so all of it runs offline."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mmctr.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Pages rendered at this many pixels per inch: enough for OCR of body text, small enough for 2 cores.
RENDER_DPI = 110
# A PDF text layer shorter than this is treated as absent (scans often carry a few stray glyphs).
MIN_TEXT_LAYER = 20


@dataclass
class Record:
    """One indexed page or passage. `id` is unique in an index; `doc` groups pages for --delete."""

    id: str
    doc: str
    page: int
    source: str  # where it came from: a file path, or the data root's file and row
    text: str
    image: Callable[[], bytes | None]  # encoded image bytes, read when the index is built


class Ocr:
    """rapidocr, loaded on first use; quiet (its logger prints every model path at INFO)."""

    def __init__(self) -> None:
        self._engine = None

    def __call__(self, img) -> str:
        if self._engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as err:
                raise ConfigError("OCR needs rapidocr: pip install -e '.[retrieval]'") from err
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            self._engine = RapidOCR()
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        result = self._engine(img)
        return " ".join(result.txts or ()) if result is not None else ""


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def from_pdfs(folder: Path, ocr: Ocr | None = None) -> Iterator[Record]:
    """Every page of every *.pdf under `folder` (sorted, recursive)."""
    try:
        import pypdfium2 as pdfium
    except ImportError as err:
        raise ConfigError("indexing PDFs needs pypdfium2: pip install -e '.[retrieval]'") from err
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, None, "not a directory; --pdf takes a folder of PDF files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".pdf" and p.is_file())
    if not files:
        raise DataError(folder, None, "holds no .pdf files")
    ocr = ocr or Ocr()
    for path in files:
        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as err:
            raise DataError(path, None, f"cannot be opened as a PDF: {err}") from None
        rel = str(path.relative_to(folder))
        for i in range(len(pdf)):
            page = pdf[i]
            img = page.render(scale=RENDER_DPI / 72).to_pil()
            text = page.get_textpage().get_text_range().strip()
            if len(text) < MIN_TEXT_LAYER:
                text = ocr(img)
            data = _png(img)
            yield Record(f"{rel}#{i + 1}", rel, i + 1, f"{path}, page {i + 1}", text, lambda d=data: d)
        pdf.close()


def from_images(folder: Path, ocr: Ocr | None = None) -> Iterator[Record]:
    """Every image file under `folder`, one page each, its text by OCR."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, None, "not a directory; --images takes a folder of page images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(folder, None, f"holds no images ({', '.join(IMAGE_SUFFIXES)})")
    ocr = ocr or Ocr()
    for path in files:
        data = path.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as im:
                text = ocr(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(path, None, f"cannot be read as an image: {err}") from None
        rel = str(path.relative_to(folder))
        yield Record(rel, rel, 1, str(path), text, lambda d=data: d)


def from_data_root(root: Path, doc_text: str = "vlm") -> Iterator[Record]:
    """MMDocIR pages (`doc#page`) and M2KR passages (their ids) of a Track-1 data root."""
    from mmctr.retrieval.data import load

    data = load(Path(root))
    if data.docs is not None:
        pages = data.docs.pages
        texts = {"vlm": pages.vlm_text, "ocr": pages.ocr_text}
        for i in range(len(pages)):
            text = f"{pages.vlm_text[i]} {pages.ocr_text[i]}" if doc_text == "both" else texts[doc_text][i]
            pid = pages.page_id[i]
            yield Record(
                f"{pages.doc_name[i]}#{pid}",
                pages.doc_name[i],
                int(pid) if str(pid).isdigit() else i,
                f"{data.docs.source}, row {i}",
                text,
                lambda i=i: pages.image(i),
            )
    if data.passages is not None:
        ps = data.passages.passages
        for i in range(len(ps)):
            shot = ps.screenshot[i]
            yield Record(
                ps.passage_id[i],
                ps.passage_id[i],
                0,
                str(shot) if shot else f"{data.passages.source}, row {i}",
                ps.text[i],
                lambda p=shot: p.read_bytes() if p is not None and p.exists() else None,
            )
