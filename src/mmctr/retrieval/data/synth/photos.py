"""Procedural photos of M2KR entities and the page screenshots that show them.

An entity's hidden scene is drawn once from its look (palette, shape, texture: shared with its
look-alikes) and its own marks (a scatter of small coloured shapes that only it has). Every photo is
a view of that scene: another crop, a small rotation, another scale and a colour shift, so two
photos of one entity share local features (what instance matching finds) but never bytes. Photo 0
is placed in the passage's screenshot among text blocks; queries show photos 1, 2, ...

Each scene, view and screenshot comes from its own generator seeded by (seed, split, entity, view),
so the files are the same whichever worker draws them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from mmctr.retrieval.data.synth.entities import Entity, Look
from mmctr.retrieval.data.synth.pages import draw_words, line_height, wrap

PHOTO_SALT = 0x9407
QUERY_JPEG_QUALITY = 85
SHOT_JPEG_QUALITY = 80


def _texture(look: Look, s: int, rng: np.random.Generator) -> np.ndarray:
    bg = np.array(look.bg, dtype=np.float32)
    if look.texture == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(a) * np.arange(s, dtype=np.float32))[None, :] + (
            np.sin(a) * np.arange(s, dtype=np.float32)
        )[:, None]
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        px = bg * (0.6 + 0.55 * ramp)[..., None]
    elif look.texture == "noise":
        px = bg + rng.standard_normal((s, s, 1), dtype=np.float32) * 20
    elif look.texture == "dots":
        period = max(6, s // 10)
        on = ((np.arange(s)[:, None] % period) < period // 3) & (
            (np.arange(s)[None, :] % period) < period // 3
        )
        px = np.where(on[..., None], bg * 0.6 + 90, bg)
    else:  # diagonal stripes
        period = max(8, s // 8)
        on = ((np.arange(s)[:, None] + np.arange(s)[None, :]) % period) < period // 2
        px = np.where(on[..., None], bg * 0.75 + 40, bg)
    return np.clip(px, 0, 255).astype(np.uint8)


SKIN_TONES = ((236, 198, 166), (214, 170, 130), (170, 120, 86), (112, 76, 52))


def _shape(
    d: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill, skin=SKIN_TONES[0]
) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "ring":
        d.ellipse(box, outline=fill, width=max(3, int(r / 3)))
    elif shape == "cross":
        w = r / 3
        d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
        d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif shape == "tower":
        d.rectangle((cx - r * 0.35, cy - r * 0.6, cx + r * 0.35, cy + r), fill=fill)
        d.polygon([(cx, cy - r * 1.2), (cx - r * 0.5, cy - r * 0.6), (cx + r * 0.5, cy - r * 0.6)], fill=fill)
    elif shape == "arch":
        d.pieslice((cx - r, cy - r, cx + r, cy + r), 180, 360, fill=fill)
        d.rectangle((cx - r, cy, cx - r * 0.6, cy + r), fill=fill)
        d.rectangle((cx + r * 0.6, cy, cx + r, cy + r), fill=fill)
    else:  # portrait: shoulders and head
        d.ellipse((cx - r * 1.1, cy + r * 0.35, cx + r * 1.1, cy + r * 2.0), fill=fill)
        d.ellipse((cx - r * 0.5, cy - r * 0.75, cx + r * 0.5, cy + r * 0.45), fill=skin)
        d.chord((cx - r * 0.55, cy - r * 0.85, cx + r * 0.55, cy + r * 0.2), 180, 360, fill=(50, 35, 25))


def scene(e: Entity, size: int, seed: int, split: int) -> Image.Image:
    """The entity's hidden full scene, size x size."""
    rng = np.random.default_rng([seed, PHOTO_SALT, split, e.index])
    img = Image.fromarray(_texture(e.look, size, rng), "RGB")
    d = ImageDraw.Draw(img)
    # Its own marks first (behind and around the object), then the family's shape, then more marks:
    # the marks are what makes this entity's photos match each other and not its look-alikes'.
    n_marks = int(rng.integers(18, 30))
    for k in range(n_marks):
        if k == n_marks // 2:
            cx, cy = size * (0.5 + rng.uniform(-0.08, 0.08, 2))
            skin = SKIN_TONES[int(e.look.hue * 97) % len(SKIN_TONES)]  # shared by a family, like its palette
            _shape(d, e.look.shape, cx, cy, size * rng.uniform(0.2, 0.27), e.look.fg, skin)
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = rng.uniform(0, size, 2)
        r = size * rng.uniform(0.015, 0.05)
        kind = int(rng.integers(0, 4))
        if kind == 0:
            d.ellipse((x - r, y - r, x + r, y + r), fill=c)
        elif kind == 1:
            d.rectangle((x - r, y - r * 0.6, x + r, y + r * 0.6), fill=c)
        elif kind == 2:
            d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r * 0.4)], fill=c)
        else:
            x2, y2 = x + rng.uniform(-3, 3) * r, y + rng.uniform(-3, 3) * r
            d.line((x, y, x2, y2), fill=c, width=max(2, int(r / 2)))
    return img


def view(sc: Image.Image, e: Entity, k: int, out_size: int, seed: int, split: int) -> Image.Image:
    """Photo k of the entity: a crop of its scene, rotated a little, rescaled and colour-shifted.
    Photo 0 (for the screenshot) is a wide, straight crop; query photos vary more."""
    rng = np.random.default_rng([seed, PHOTO_SALT, split, e.index, k + 1])
    s = sc.size[0]
    lo, hi = (0.82, 0.95) if k == 0 else (0.6, 0.88)
    frac = rng.uniform(lo, hi)
    angle = 0.0 if k == 0 else float(rng.uniform(-7, 7))
    img = sc.rotate(angle, resample=Image.BILINEAR, fillcolor=e.look.bg) if angle else sc
    cw = int(s * frac)
    ch = int(cw * rng.uniform(0.8, 1.0))
    x0 = int(rng.integers(0, s - cw + 1))
    y0 = int(rng.integers(0, s - ch + 1))
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    scale = out_size / max(cw, ch) * (1.0 if k == 0 else rng.uniform(0.8, 1.0))
    img = img.resize((max(8, int(cw * scale)), max(8, int(ch * scale))), Image.BILINEAR)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.15))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.8, 1.2))


def jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def screenshot(
    e: Entity,
    texts: list[str],
    photo: Image.Image,
    size: tuple[int, int],
    font_size: int,
    seed: int,
    split: int,
) -> Image.Image:
    """A Wikipedia-like page: title, the passage texts, an infobox with photo 0 at a random scale,
    and unrelated blocks (a contents box, a grey banner) around them."""
    rng = np.random.default_rng([seed, PHOTO_SALT, split, e.index, 0])
    w, h = size
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    m = max(8, w // 30)
    d.rectangle((0, 0, w, line_height(font_size) + 8), fill=(234, 236, 240))
    draw_words(img, (m, 4), "Encyclopedia", font_size, fill=(80, 80, 80))
    y = line_height(font_size) + 14
    draw_words(img, (m, y), e.name, font_size + 8)
    y += line_height(font_size + 8) + 2
    d.line((m, y, w - m, y), fill=(170, 170, 170))
    y += 8

    # Infobox on the right: photo 0 scaled to 38-52% of the page width.
    box_w = int(w * rng.uniform(0.38, 0.52))
    pw = box_w - 12
    ph = int(photo.size[1] * pw / photo.size[0])
    shown = photo.resize((pw, ph), Image.BILINEAR)
    bx = w - m - box_w
    d.rectangle(
        (bx, y, bx + box_w, y + ph + 14 + 3 * line_height(font_size - 1)),
        fill=(248, 249, 250),
        outline=(200, 200, 200),
    )
    img.paste(shown, (bx + 6, y + 6))
    iy = y + ph + 10
    for line in (e.name, f"Region: {e.region.replace('the ', '')}", f"Recorded: {e.year}"):
        draw_words(img, (bx + 6, iy), line, font_size - 1)
        iy += line_height(font_size - 1)
    box_bottom = iy + 4

    # Body text to the left of the infobox, then full width below it.
    lh = line_height(font_size)
    ty = y
    for t in texts:
        body = t.split(" content: ", 1)[-1]
        for line in wrap(body, font_size, bx - 2 * m if ty < box_bottom else w - 2 * m):
            if ty + lh > h - m:
                break
            draw_words(img, (m, ty), line, font_size)
            ty += lh
        ty += lh // 2
    ty = max(ty, box_bottom + 8)
    # A contents box and a banner: other content a screenshot crop must not confuse with the photo.
    if ty + 5 * lh < h - m:
        cw = int(w * 0.45)
        d.rectangle((m, ty, m + cw, ty + 4 * lh), fill=(248, 249, 250), outline=(200, 200, 200))
        for i, label in enumerate(("Contents", "1 History", "2 Description")):
            draw_words(img, (m + 6, ty + 4 + i * lh), label, font_size - 1)
        ty += 4 * lh + 10
    if ty + 2 * lh < h - m:
        grey = int(rng.integers(200, 235))
        d.rectangle((m, ty, w - m, min(h - m, ty + int(rng.integers(20, 60)))), fill=(grey, grey, grey))
        ty += 64
    return img


def render_entities(task: tuple) -> int:
    """Worker: for each entity, its scene, its screenshot (photo 0) and its query photos."""
    (entities, texts, query_views, shot_dir, query_dir, scale, seed, split) = task
    shot_dir, query_dir = Path(shot_dir), Path(query_dir)
    for e in entities:
        sc = scene(e, scale.scene_size, seed, split)
        photo0 = view(sc, e, 0, scale.scene_size, seed, split)
        page = screenshot(e, texts[e.index], photo0, scale.screenshot_size, scale.font_size, seed, split)
        (shot_dir / e.screenshot).write_bytes(jpeg(page, SHOT_JPEG_QUALITY))
        for k, rel in query_views.get(e.index, []):
            path = query_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg(view(sc, e, k, scale.photo_size, seed, split), QUERY_JPEG_QUALITY))
    return len(entities)
