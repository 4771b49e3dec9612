"""Draw a planned page (docs.PageSpec) as a JPEG, and write what OCR and a VLM would read from it.

The three views of a page differ the way the real ones do: the image shows everything; `ocr_text`
is the printed text only (header, heading, paragraphs, table cells, captions) with OCR errors, most
of all in table cells; `vlm_text` is a clean description that also says what the charts and
figures show. Chart and figure labels are drawn as graphics, so they reach `vlm_text` and the
pixels but never `ocr_text`.

Text is drawn with PIL's bundled font (Aileron, through FreeType) from a per-process cache of word
masks, eight times faster than drawing each line; the pixels are the same in every process.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmctr.retrieval.data.synth.docs import ChartEl, FigureEl, PageSpec, Sentence, TableEl
from mmctr.retrieval.data.synth.text import COLOURS, format_value, ocr_noise

JPEG_QUALITY = 75
OCR_WORD_ERROR = 0.04
OCR_CELL_ERROR = 0.30
INK = (20, 20, 20)
GREY = (110, 110, 110)
BAR_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))

# ----------------------------------------------------------------------------------------------
# Fonts and words


_FONTS: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}
_WORDS: dict[tuple[int, str], Image.Image] = {}


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if size not in _FONTS:
        try:
            _FONTS[size] = ImageFont.load_default(size=size)
        except (TypeError, OSError):  # a Pillow built without FreeType: the small bitmap font
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


def line_height(size: int) -> int:
    ascent, descent = font(size).getmetrics()
    return ascent + descent + max(2, size // 4)


def word_mask(word: str, size: int) -> Image.Image:
    key = (size, word)
    mask = _WORDS.get(key)
    if mask is None:
        f = font(size)
        ascent, descent = f.getmetrics()
        width = max(1, int(np.ceil(f.getlength(word))))
        mask = Image.new("L", (width, ascent + descent), 0)
        ImageDraw.Draw(mask).text((0, 0), word, font=f, fill=255)
        if len(_WORDS) > 200_000:  # bound memory at the full scale
            _WORDS.clear()
        _WORDS[key] = mask
    return mask


def space_width(size: int) -> int:
    return max(3, int(round(font(size).getlength(" "))) + 1)


def draw_words(img: Image.Image, xy: tuple[float, float], text: str, size: int, fill=INK) -> int:
    """Draw one line of text at xy; returns its width."""
    x, y = int(xy[0]), int(xy[1])
    x0, sp = x, space_width(size)
    for w in text.split():
        m = word_mask(w, size)
        img.paste(fill, (x, y), m)
        x += m.size[0] + sp
    return x - x0 - sp


def text_width(text: str, size: int) -> int:
    words = text.split()
    return sum(word_mask(w, size).size[0] for w in words) + space_width(size) * max(0, len(words) - 1)


def wrap(text: str, size: int, width: int) -> list[str]:
    lines: list[str] = []
    cur: list[str] = []
    cur_w, sp = 0, space_width(size)
    for w in text.split():
        ww = word_mask(w, size).size[0]
        if cur and cur_w + sp + ww > width:
            lines.append(" ".join(cur))
            cur, cur_w = [w], ww
        else:
            cur_w = cur_w + sp + ww if cur else ww
            cur.append(w)
    if cur:
        lines.append(" ".join(cur))
    return lines


# ----------------------------------------------------------------------------------------------
# Elements


def _element_height(el, width: int, height: int, size: int) -> int:
    if isinstance(el, TableEl):
        return line_height(size) * (len(el.rows) + 2) + 10 + line_height(size)
    if isinstance(el, ChartEl):
        return int(height * 0.30) + line_height(size)
    return int(height * 0.28) + line_height(size)


def _draw_table(
    img: Image.Image, d: ImageDraw.ImageDraw, el: TableEl, x: int, y: int, w: int, size: int
) -> int:
    lh = line_height(size)
    draw_words(img, (x, y), el.title, size)
    y += lh + 2
    first = int(w * 0.4)
    col_w = (w - first) // max(1, len(el.header) - 1)
    rows = [el.header] + el.rows
    for r, row in enumerate(rows):
        if r == 0:
            d.rectangle((x, y, x + w, y + lh), fill=(225, 230, 238))
        for c, cell in enumerate(row):
            cx = x + 4 if c == 0 else x + first + (c - 1) * col_w + 4
            draw_words(img, (cx, y + 1), cell, size)
        d.line((x, y + lh, x + w, y + lh), fill=(170, 170, 170))
        y += lh
    d.rectangle((x, y - lh * len(rows), x + w, y), outline=(120, 120, 120))
    return y + 6


def _draw_chart(
    img: Image.Image, d: ImageDraw.ImageDraw, el: ChartEl, x: int, y: int, w: int, h: int, size: int
) -> None:
    d.rectangle((x, y, x + w, y + h), outline=(160, 160, 160), fill=(250, 250, 250))
    small = max(8, size - 1)
    draw_words(img, (x + 6, y + 4), el.title, small, fill=(40, 40, 40))
    top = y + line_height(small) + 8
    if el.style == "pie":
        r = min(w * 0.22, (h - (top - y)) * 0.42)
        cx, cy = x + w * 0.28, top + (y + h - top) / 2
        start = -90.0
        for i, v in enumerate(el.values):
            extent = 360.0 * v / max(sum(el.values), 1e-9)
            d.pieslice((cx - r, cy - r, cx + r, cy + r), start, start + extent, fill=BAR_COLOURS[i % 6])
            start += extent
        ly = top + 4
        for i, (lab, v) in enumerate(zip(el.labels, el.values, strict=True)):
            lx = int(x + w * 0.56)
            d.rectangle((lx, ly + 3, lx + 9, ly + 12), fill=BAR_COLOURS[i % 6])
            draw_words(img, (lx + 14, ly), f"{lab} {format_value(v)}%", small)
            ly += line_height(small)
        return
    base = y + h - line_height(small) - 4
    n = len(el.values)
    slot = (w - 20) / n
    vmax = max(el.values) or 1.0
    for i, (lab, v) in enumerate(zip(el.labels, el.values, strict=True)):
        bx = x + 10 + i * slot
        bh = (base - top - line_height(small)) * v / vmax
        d.rectangle((bx + slot * 0.18, base - bh, bx + slot * 0.82, base), fill=BAR_COLOURS[i % 6])
        val = format_value(v)
        draw_words(
            img, (bx + (slot - text_width(val, small)) / 2, base - bh - line_height(small)), val, small
        )
        draw_words(img, (bx + max(0.0, (slot - text_width(lab, small)) / 2), base + 2), lab, small)
    d.line((x + 8, base, x + w - 8, base), fill=(90, 90, 90))


def _draw_figure(
    img: Image.Image,
    d: ImageDraw.ImageDraw,
    el: FigureEl,
    x: int,
    y: int,
    w: int,
    h: int,
    size: int,
    rng: np.random.Generator,
) -> None:
    d.rectangle((x, y, x + w, y + h), fill=(236, 242, 232), outline=(150, 160, 150))
    small = max(8, size - 1)
    draw_words(img, (x + 6, y + 4), el.title, small, fill=(40, 60, 40))
    top = y + line_height(small) + 6
    for _ in range(3):  # roads or rivers: context with no label
        pts = [(x + rng.uniform(0, w), top + rng.uniform(0, y + h - top)) for _ in range(4)]
        d.line(pts, fill=(180, 190, 215), width=3)
    cells = rng.permutation(6)[: len(el.markers)]
    for (obj, colour, shape), cell in zip(el.markers, cells.tolist(), strict=True):
        cx = x + w * (0.1 + 0.45 * (cell % 2)) + rng.uniform(0, w * 0.08)
        cy = top + (y + h - top) * (0.12 + 0.3 * (cell // 2))
        r = 6
        c = COLOURS[colour]
        if shape == "circle":
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c)
        elif shape == "square":
            d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=c)
        elif shape == "triangle":
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=c)
        else:
            d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=c)
        draw_words(img, (cx + r + 4, cy - line_height(small) / 2), obj, small, fill=(30, 30, 30))


# ----------------------------------------------------------------------------------------------
# The page


@dataclass
class RenderedPage:
    jpeg: bytes
    ocr_text: str
    vlm_text: str


def _layout(spec: PageSpec, paragraphs: list[list[Sentence]], w: int, h: int, size: int) -> tuple[list, int]:
    """Blocks with their y positions; returns (blocks, bottom)."""
    margin = int(w * 0.07)
    inner = w - 2 * margin
    lh = line_height(size)
    y = margin + line_height(size - 1) + 6
    blocks: list = [("heading", y, wrap(spec.heading, size + 4, inner))]
    y += line_height(size + 4) * len(blocks[0][2]) + 6
    el_h = _element_height(spec.element, inner, h, size) if spec.element is not None else 0
    for i, para in enumerate(paragraphs):
        if i == spec.element_after and spec.element is not None:
            blocks.append(("element", y, el_h))
            y += el_h + 8
        lines = wrap(" ".join(s.text for s in para), size, inner)
        blocks.append(("para", y, lines))
        y += lh * len(lines) + lh // 2
    if spec.element is not None and spec.element_after >= len(paragraphs):
        blocks.append(("element", y, el_h))
        y += el_h + 8
    return blocks, y


def _fit(spec: PageSpec, w: int, h: int, size: int) -> tuple[list, list[list[Sentence]]]:
    """Drop filler sentences from the end until the page fits; facts always stay."""
    paragraphs = [list(p) for p in spec.paragraphs]
    bottom_limit = h - int(w * 0.07)
    while True:
        blocks, bottom = _layout(spec, paragraphs, w, h, size)
        if bottom <= bottom_limit:
            return blocks, paragraphs
        for para in reversed(paragraphs):
            j = next((k for k in range(len(para) - 1, -1, -1) if not para[k].fact), None)
            if j is not None:
                del para[j]
                break
        else:
            raise ValueError(f"page {spec.page_no} of {spec.doc_title!r} does not fit even without filler")
        paragraphs = [p for p in paragraphs if p]


def describe_element(el) -> str:
    if isinstance(el, TableEl):
        # As a VLM transcribes a table: the header once, then one row per line.
        rows = " ".join(f"| {' | '.join(row)} |" for row in el.rows)
        return f'A table titled "{el.title}" with columns {", ".join(el.header[1:])}: {rows}'
    if isinstance(el, ChartEl):
        pairs = ", ".join(f"{lab} {format_value(v)}" for lab, v in zip(el.labels, el.values, strict=True))
        top = el.labels[int(np.argmax(el.values))]
        if el.style == "pie":
            return f'A pie chart titled "{el.title}" shows the shares (percent): {pairs}. The largest share is {top}.'
        return f'A bar chart titled "{el.title}" compares {pairs}. The tallest bar is {top}.'
    marks = ", ".join(f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s} marks the {o}" for o, c, s in el.markers)
    return f'A figure, "{el.title}", is a labelled drawing in which {marks}.'


def render_page(
    spec: PageSpec, size: tuple[int, int], font_size: int, rng: np.random.Generator
) -> RenderedPage:
    w, h = size
    blocks, paragraphs = _fit(spec, w, h, font_size)
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    margin = int(w * 0.07)
    inner = w - 2 * margin
    lh = line_height(font_size)
    noisy: list[tuple[str, float]] = []  # what OCR reads, in reading order, with its error rate

    header = f"{spec.doc_title}"
    draw_words(img, (margin, margin * 0.6), header, font_size - 1, fill=GREY)
    num = str(spec.page_no)
    draw_words(
        img, (w - margin - text_width(num, font_size - 1), margin * 0.6), num, font_size - 1, fill=GREY
    )
    noisy.append((f"{header} {num}", OCR_WORD_ERROR))

    for kind, y, content in blocks:
        if kind == "heading":
            for i, line in enumerate(content):
                draw_words(img, (margin, y + i * line_height(font_size + 4)), line, font_size + 4)
            noisy.append((" ".join(content), OCR_WORD_ERROR))
        elif kind == "para":
            for i, line in enumerate(content):
                draw_words(img, (margin, y + i * lh), line, font_size)
            noisy.append((" ".join(content), OCR_WORD_ERROR))
        else:
            el = spec.element
            if isinstance(el, TableEl):
                _draw_table(img, d, el, margin, y, inner, font_size)
                noisy.append((el.title, OCR_WORD_ERROR))
                noisy.append((" ".join(" ".join(r) for r in [el.header[1:]] + el.rows), OCR_CELL_ERROR))
                cap_text = f"Table {spec.element_no}"
            else:
                box_h = content - lh
                if isinstance(el, ChartEl):
                    _draw_chart(img, d, el, margin, y, inner, box_h, font_size)
                else:
                    _draw_figure(img, d, el, margin, y, inner, box_h, font_size, rng)
                cap_text = f"Figure {spec.element_no}"
            cy = y + content - lh + 2
            draw_words(
                img,
                (margin + (inner - text_width(cap_text, font_size - 1)) / 2, cy),
                cap_text,
                font_size - 1,
                GREY,
            )
            noisy.append((cap_text, OCR_WORD_ERROR))

    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    ocr = " ".join(ocr_noise(t, rng, p) for t, p in noisy)
    prose = " ".join(s.text for p in paragraphs for s in p)
    vlm = f'Page {spec.page_no} of the {spec.domain.lower()} document "{spec.doc_title}". Heading: {spec.heading}. {prose}'
    if spec.element is not None:
        vlm += " " + describe_element(spec.element)
    return RenderedPage(buf.getvalue(), ocr, vlm)
