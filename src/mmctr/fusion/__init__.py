"""Task 1 fusions: raw encoder outputs (row == item id) -> one `dim`-d vector per item. One registry.

Each entry names the modalities it needs, so the pipeline encodes only those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mmctr.errors import ConfigError
from mmctr.fusion.base import FusionInput, FusionOptions, FusionResult
from mmctr.fusion.baselines import provided, random_emb
from mmctr.fusion.coclick import coclick
from mmctr.fusion.pca import clip_sum, concat_pca, image_only, pca_concat, text_only

__all__ = ["DEFAULT_FUSION", "FUSIONS", "FusionInput", "FusionOptions", "FusionResult", "get_fusion"]


@dataclass(frozen=True)
class FusionEntry:
    needs: tuple[str, ...]  # modalities to encode
    about: str
    fuse: Callable[[FusionInput], FusionResult]


FUSIONS: dict[str, FusionEntry] = {
    "concat_pca": FusionEntry(
        ("text", "image"), "L2-normalise, concatenate, PCA to dim, L2-normalise (seed solution)", concat_pca
    ),
    "pca_concat": FusionEntry(
        ("text", "image"), "PCA each modality to dim/2, concatenate (Task-2 award paper's V4)", pca_concat
    ),
    "clip_sum": FusionEntry(
        ("text", "image"), "weighted sum in one CLIP space, PCA to dim (CLIP for both modalities)", clip_sum
    ),
    "coclick": FusionEntry(
        ("text", "image"),
        "content features projected by an InfoNCE model trained on co-clicked item pairs",
        coclick,
    ),
    "text": FusionEntry(("text",), "titles only, PCA to dim", text_only),
    "image": FusionEntry(("image",), "covers only, PCA to dim", image_only),
    "random": FusionEntry((), "seeded random unit vectors (baseline)", random_emb),
    "provided": FusionEntry((), "copy the data's item_emb_d128 (baseline)", provided),
}

DEFAULT_FUSION = "concat_pca"


def get_fusion(name: str) -> FusionEntry:
    try:
        return FUSIONS[name]
    except KeyError:
        raise ConfigError(f"--fusion {name!r} unknown; available: {', '.join(FUSIONS)}") from None
