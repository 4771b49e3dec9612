"""Task 1 encoders: one registry of image and text encoders, each owning its preprocessing.

An encoder is named `family[:model]`, e.g. `minilm`, `st:sentence-transformers/all-mpnet-base-v2`,
`hf:/models/my-bert`, `e5` (= `e5:intfloat/multilingual-e5-base`, with the "passage: " prefix),
`effnet` (the bundled EfficientNet-Lite0), `clip:openai/clip-vit-large-patch14`. The model part is a
hub name or a local directory; families with a default need none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mmctr.encoders.base import Encoder, EncoderOptions, ImageEncoder, TextEncoder
from mmctr.errors import ConfigError

__all__ = [
    "DEFAULT_IMAGE_ENCODER",
    "DEFAULT_TEXT_ENCODER",
    "ENCODERS",
    "Encoder",
    "EncoderOptions",
    "ImageEncoder",
    "TextEncoder",
    "build_encoder",
    "list_encoders",
]


@dataclass(frozen=True)
class EncoderEntry:
    modalities: tuple[str, ...]
    default_model: str | None  # None: the user must name a model (family:model)
    about: str
    build: Callable[[str, str, EncoderOptions], Encoder]  # (modality, model, options) -> encoder


def _minilm(modality: str, model: str, options: EncoderOptions) -> Encoder:
    from mmctr.encoders.text import SentenceTransformerEncoder, bundled_minilm_path

    return SentenceTransformerEncoder(bundled_minilm_path() if model == "bundled" else model, options)


def _st(modality: str, model: str, options: EncoderOptions) -> Encoder:
    from mmctr.encoders.text import SentenceTransformerEncoder

    return SentenceTransformerEncoder(model, options)


def _hf(modality: str, model: str, options: EncoderOptions) -> Encoder:
    from mmctr.encoders.text import HFMeanPoolEncoder

    return HFMeanPoolEncoder(model, options)


def _e5(modality: str, model: str, options: EncoderOptions) -> Encoder:
    from mmctr.encoders.text import HFMeanPoolEncoder

    # Items are the documents being retrieved, hence "passage: " (E5's convention).
    return HFMeanPoolEncoder(model, options, default_prefix="passage: ")


def _effnet(modality: str, model: str, options: EncoderOptions) -> Encoder:
    from mmctr.encoders.image import EfficientNetLiteEncoder

    return EfficientNetLiteEncoder(model, options)


def _clip(modality: str, model: str, options: EncoderOptions) -> Encoder:
    from mmctr.encoders.clip import CLIPImageEncoder, CLIPTextEncoder

    return CLIPImageEncoder(model, options) if modality == "image" else CLIPTextEncoder(model, options)


ENCODERS: dict[str, EncoderEntry] = {
    "minilm": EncoderEntry(
        ("text",), "bundled", "all-MiniLM-L6-v2 (384-d), bundled offline, via sentence-transformers", _minilm
    ),
    "st": EncoderEntry(("text",), None, "any sentence-transformers model: st:NAME_OR_PATH", _st),
    "hf": EncoderEntry(
        ("text",), None, "Hugging Face encoder, attention-masked mean pooling: hf:NAME_OR_PATH", _hf
    ),
    "e5": EncoderEntry(
        ("text",),
        "intfloat/multilingual-e5-base",
        "E5 (mean pooling, 'passage: ' prefix; --text-prefix overrides)",
        _e5,
    ),
    "effnet": EncoderEntry(
        ("image",),
        "efficientnet-lite0",
        "EfficientNet-Lite0 ImageNet weights (1280-d pooled), bundled offline",
        _effnet,
    ),
    "clip": EncoderEntry(
        ("image", "text"),
        "openai/clip-vit-large-patch14",
        "CLIP via transformers, either tower: clip:NAME_OR_PATH",
        _clip,
    ),
}

DEFAULT_TEXT_ENCODER = "minilm"
DEFAULT_IMAGE_ENCODER = "effnet"


def parse_spec(spec: str) -> tuple[str, str | None]:
    family, sep, model = spec.partition(":")
    return family, (model if sep else None)


def build_encoder(spec: str, modality: str, options: EncoderOptions | None = None) -> Encoder:
    """The encoder named `spec` for `modality` ("text" or "image"). Loads no weights yet."""
    family, model = parse_spec(spec)
    entry = ENCODERS.get(family)
    flag = f"--{modality}-encoder"
    if entry is None:
        raise ConfigError(
            f"{flag} {spec!r}: unknown encoder family {family!r}; available: {', '.join(ENCODERS)} "
            "(name a model as family:NAME_OR_PATH)"
        )
    if modality not in entry.modalities:
        raise ConfigError(
            f"{flag} {spec!r}: {family} encodes {' and '.join(entry.modalities)}, not {modality}"
        )
    model = model or entry.default_model
    if not model:
        raise ConfigError(f"{flag} {spec!r}: {family} needs a model, as {family}:NAME_OR_PATH")
    try:
        encoder = entry.build(modality, model, options or EncoderOptions())
    except ValueError as err:
        raise ConfigError(f"{flag} {spec!r}: {err}") from None
    encoder.name = spec
    return encoder


def list_encoders() -> list[tuple[str, str, str]]:
    """(family, modalities, description) for `mmctr embed --list`."""
    return [(name, "+".join(e.modalities), e.about) for name, e in ENCODERS.items()]
