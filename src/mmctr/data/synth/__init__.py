"""A generator of data in the exact MMCTR layout, with the ground truth the real data lacks.

`generate(out, scale, seed)` builds a hidden world (world.py: items with a topic seen in titles
and tags and a style seen only in covers, users with concentrated tastes, histories, a known click
model), writes every file (writer.py, images.py) into a temporary directory beside `out`, and
renames it into place at the end, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

from mmctr.data.synth.config import SCALES, Scale, WorldParams
from mmctr.data.synth.generator import generate

__all__ = ["SCALES", "Scale", "WorldParams", "generate"]
