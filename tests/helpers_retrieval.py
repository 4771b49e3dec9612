"""Builders for the retrieval tests (imported by name: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import hashlib
import io


def page_png(name: str, size: int = 96) -> bytes:
    """A page image whose colours and shapes are a function of `name`: distinct pages look distinct."""
    from PIL import Image, ImageDraw

    h = hashlib.sha256(name.encode()).digest()
    img = Image.new("RGB", (size, size), (h[0], h[1], h[2]))
    d = ImageDraw.Draw(img)
    for i in range(4):
        x, y = h[3 + i] % (size - 20), h[7 + i] % (size - 20)
        d.ellipse(
            (x, y, x + 10 + h[11 + i] % 30, y + 10 + h[15 + i] % 30), fill=(h[19 + i], h[23 + i], h[27 + i])
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
