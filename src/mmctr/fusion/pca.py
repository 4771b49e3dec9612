"""Content-only fusions: PCA of the concatenation, concatenation of PCAs, single modalities, and a
weighted sum in a shared CLIP space. Inputs and outputs are L2-normalised, as the seed solution did.
"""

from __future__ import annotations

import numpy as np

from mmctr.errors import ConfigError
from mmctr.fusion.base import FusionInput, FusionResult, fit_pca, l2n, output


def concat_pca(inp: FusionInput) -> FusionResult:
    """L2-normalise text and image, concatenate, PCA to `dim`, L2-normalise (the seed solution)."""
    x = np.concatenate([l2n(inp.features[m][inp.item_ids]) for m in ("text", "image")], axis=1)
    pca = fit_pca(x, inp.dim, "concatenated text+image features")
    return FusionResult(output(inp, l2n(pca.transform(x))), pca.variance_kept, {"input_dim": x.shape[1]})


def pca_concat(inp: FusionInput) -> FusionResult:
    """PCA each modality to dim/2 and concatenate (the Task-2 award paper's best, "V4").

    Each half is L2-normalised and the result scaled by 1/sqrt(2): unit norm, both modalities
    weighted equally whatever their variance kept."""
    d_text = (inp.dim + 1) // 2
    parts, kept = [], {}
    for m, k in (("text", d_text), ("image", inp.dim - d_text)):
        x = l2n(inp.features[m][inp.item_ids])
        pca = fit_pca(x, k, f"{m} features")
        parts.append(l2n(pca.transform(x)))
        kept[m] = round(pca.variance_kept, 4)
    rows = np.concatenate(parts, axis=1) / np.sqrt(2.0)
    return FusionResult(
        output(inp, rows.astype(np.float32)),
        float(np.mean(list(kept.values()))),
        {"variance_kept_by_modality": kept},
    )


def _single(inp: FusionInput, modality: str) -> FusionResult:
    x = l2n(inp.features[modality][inp.item_ids])
    pca = fit_pca(x, inp.dim, f"{modality} features")
    return FusionResult(output(inp, l2n(pca.transform(x))), pca.variance_kept, {"input_dim": x.shape[1]})


def text_only(inp: FusionInput) -> FusionResult:
    """Titles only, PCA to `dim`."""
    return _single(inp, "text")


def image_only(inp: FusionInput) -> FusionResult:
    """Covers only, PCA to `dim`."""
    return _single(inp, "image")


def clip_sum(inp: FusionInput) -> FusionResult:
    """w * image + (1 - w) * text in CLIP's shared space (both L2-normalised), reduced to `dim` by
    PCA when the space is wider. Needs one CLIP checkpoint for both modalities."""
    t, i = inp.encoders.get("text", {}), inp.encoders.get("image", {})
    if t.get("family") != "clip" or i.get("family") != "clip" or t.get("model") != i.get("model"):
        raise ConfigError(
            "fusion clip_sum adds image and text vectors, which only share a space when both come from "
            "the same CLIP checkpoint: use --text-encoder clip:NAME --image-encoder clip:NAME "
            f"(got text {t.get('family')}:{t.get('model')}, image {i.get('family')}:{i.get('model')})"
        )
    w = inp.options.image_weight
    if not 0.0 <= w <= 1.0:
        raise ConfigError(f"--image-weight {w}: expected a weight in [0, 1]")
    x = l2n(w * l2n(inp.features["image"][inp.item_ids]) + (1 - w) * l2n(inp.features["text"][inp.item_ids]))
    if x.shape[1] == inp.dim:
        return FusionResult(output(inp, x.astype(np.float32)), None, {"image_weight": w})
    pca = fit_pca(x, inp.dim, "CLIP image+text sums")
    return FusionResult(output(inp, l2n(pca.transform(x))), pca.variance_kept, {"image_weight": w})
