"""Procedural JPEG covers. An item's STYLE alone decides the picture's palette, shape and texture;
its topic never reaches the image, so style is what only an image encoder can see.

Each cover is drawn from its own generator seeded by (seed, item_id), so the files are the same
whichever worker draws them and in whatever order.
"""

from __future__ import annotations

import colorsys
import multiprocessing as mp
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmctr.data.schema import image_path

SHAPES = ("circle", "square", "triangle", "stripes", "ring", "cross")
TEXTURES = ("noise", "gradient", "dots")
_IMAGE_SALT = 0x1A6E  # separates the cover generators from the world's main generator


@dataclass(frozen=True)
class Look:
    """What a style looks like: background and foreground HSV, a shape and a texture."""

    bg: tuple[float, float, float]
    fg: tuple[float, float, float]
    shape: str
    texture: str


def style_looks(n_styles: int) -> list[Look]:
    """Distinct looks: hues spread around the wheel (the foreground opposite the background),
    and shape and texture cycled so that neighbouring styles differ in all three."""
    looks = []
    for s in range(n_styles):
        hue = s / n_styles
        dark = s % 2 == 0  # alternate dark and light backgrounds for more contrast between styles
        bg = (hue, 0.55, 0.35 if dark else 0.85)
        fg = ((hue + 0.5) % 1.0, 0.8, 0.95 if dark else 0.4)
        looks.append(Look(bg=bg, fg=fg, shape=SHAPES[s % len(SHAPES)], texture=TEXTURES[s % len(TEXTURES)]))
    return looks


def _rgb(hsv: tuple[float, float, float], hue_shift: float) -> np.ndarray:
    h, s, v = hsv
    return np.array(colorsys.hsv_to_rgb((h + hue_shift) % 1.0, s, v)) * 255.0


def draw_cover(look: Look, size: int, rng: np.random.Generator) -> Image.Image:
    """One cover: textured background, then the style's shape with per-item jitter."""
    bg = _rgb(look.bg, rng.normal(0.0, 0.015))
    fg = tuple(int(c) for c in _rgb(look.fg, rng.normal(0.0, 0.015)))
    yy, xx = np.mgrid[0:size, 0:size] / size
    if look.texture == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-6)
        pixels = bg * (0.55 + 0.6 * ramp)[..., None]
    elif look.texture == "noise":
        pixels = bg + rng.normal(0.0, 22.0, size=(size, size, 1))
    else:  # dots on a jittered grid
        period = max(4, size // 8)
        ox, oy = rng.integers(0, period, size=2)
        on = ((np.arange(size)[:, None] + oy) % period < period // 3) & (
            (np.arange(size)[None, :] + ox) % period < period // 3
        )
        pixels = np.where(on[..., None], bg * 0.6 + 100.0, bg)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(img)
    cx, cy = size * (0.5 + rng.uniform(-0.15, 0.15, size=2))
    r = size * rng.uniform(0.18, 0.3)
    box = (cx - r, cy - r, cx + r, cy + r)
    if look.shape == "circle":
        draw.ellipse(box, fill=fg)
    elif look.shape == "square":
        draw.rectangle(box, fill=fg)
    elif look.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif look.shape == "ring":
        draw.ellipse(box, outline=fg, width=max(2, size // 12))
    elif look.shape == "cross":
        w = r / 3
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fg)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fg)
    else:  # stripes across the whole cover
        period = size / rng.uniform(3.0, 4.5)
        offset = rng.uniform(0, period)
        for k in range(-1, 6):
            x0 = offset + k * period
            draw.rectangle((x0, 0, x0 + period * 0.4, size), fill=fg)
    return img


def _write_chunk(task: tuple[str, int, int, int, np.ndarray, np.ndarray]) -> int:
    folder, size, seed, n_styles, ids, styles = task
    looks = style_looks(n_styles)
    for item_id, style in zip(ids.tolist(), styles.tolist(), strict=True):
        rng = np.random.default_rng([seed, _IMAGE_SALT, item_id])
        img = draw_cover(looks[style], size, rng)
        img.save(image_path(Path(folder), item_id), format="JPEG", quality=90)
    return len(ids)


def write_images(
    folder: Path,
    style: np.ndarray,
    size: int,
    seed: int,
    n_styles: int,
    workers: int = 2,
    log: Callable[[str], None] | None = None,
) -> None:
    """Write item_images/<item_id>.jpg for items 1..n (style is indexed by item_id, row 0 unused)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.arange(1, len(style))
    chunk = 2_000
    tasks = [
        (str(folder), size, seed, n_styles, ids[i : i + chunk], style[ids[i : i + chunk]])
        for i in range(0, len(ids), chunk)
    ]
    if workers <= 1 or len(tasks) <= 2:
        for task in tasks:
            _write_chunk(task)
        return
    # fork avoids re-importing the package in each worker; any start method gives the same files.
    method = "fork" if "fork" in mp.get_all_start_methods() else None
    done = 0
    with mp.get_context(method).Pool(workers) as pool:
        for i, n in enumerate(pool.imap_unordered(_write_chunk, tasks)):
            done += n
            if log and (i + 1) % max(1, len(tasks) // 5) == 0:
                log(f"  images {done:,}/{len(ids):,}")
