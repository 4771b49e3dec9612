"""CLIP through transformers, for covers and for titles, by hub name or local directory.

Both towers of one checkpoint share one loaded model. In transformers 5.x `get_image_features` /
`get_text_features` return an output object whose `.pooler_output` is the projected embedding
(the shared image-text space that the `clip_sum` fusion relies on).
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from mmctr.encoders.base import EncoderOptions, ImageEncoder, TextEncoder, cast_model
from mmctr.encoders.image import ImageTransform

_MODELS: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()


def load_clip(name: str, device: torch.device, precision: str) -> Any:
    """One CLIPModel per (checkpoint, device, precision), shared by the image and text encoders."""
    from transformers import CLIPModel

    key = (name, str(device), precision)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = cast_model(CLIPModel.from_pretrained(name), device, precision)
        return _MODELS[key]


def _size(value: Any, *keys: str) -> int | None:
    for k in keys:
        v = value.get(k) if isinstance(value, dict) else getattr(value, k, None)
        if v:
            return int(v)
    return None


class CLIPImageEncoder(ImageEncoder):
    """CLIP's vision tower + projection. Preprocessing is read from the checkpoint's image
    processor config (shorter side resize, centre crop, CLIP mean/std); `image_size` overrides the
    crop side (position embeddings are then interpolated)."""

    family = "clip"

    def __init__(self, model: str, options: EncoderOptions):
        super().__init__(model, options)
        self._transform: ImageTransform | None = None
        self.net: Any = None
        self.native_size: int | None = None

    def preprocessing(self) -> dict[str, Any]:
        # The resolved processor settings come from the checkpoint (covered by the model
        # fingerprint); only the override is named here, so a fully cached run loads nothing.
        return {"image_size": self.options.image_size or "checkpoint"}

    def transform(self) -> ImageTransform:
        if self._transform is None:
            from transformers import AutoImageProcessor

            proc = AutoImageProcessor.from_pretrained(self.model_name)
            crop = _size(proc.crop_size, "height", "shortest_edge") or 224
            resize = _size(proc.size, "shortest_edge", "height") or crop
            if self.options.image_size:
                resize = round(resize * self.options.image_size / crop)
                crop = self.options.image_size
            resample = int(getattr(proc, "resample", 3) or 3)
            self._transform = ImageTransform(
                size=crop,
                resize=resize,
                mean=tuple(float(x) for x in proc.image_mean),
                std=tuple(float(x) for x in proc.image_std),
                resample=resample,
            )
        return self._transform

    def _load(self) -> None:
        self.net = load_clip(self.model_name, self.device, self.precision)
        self.native_size = int(self.net.config.vision_config.image_size)

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or (256 if self.device.type == "cuda" else 32)

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        interpolate = pixels.shape[-1] != self.native_size
        out = self.net.get_image_features(pixel_values=pixels, interpolate_pos_encoding=interpolate)
        return out.pooler_output  # (B, projection_dim)


class CLIPTextEncoder(TextEncoder):
    """CLIP's text tower + projection (titles truncated to the model's context, 77 tokens)."""

    family = "clip"

    def __init__(self, model: str, options: EncoderOptions):
        super().__init__(model, options)
        self.prefix = options.text_prefix or ""
        self.tokenizer: Any = None
        self.net: Any = None

    def preprocessing(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "max_length": self.options.max_length or "checkpoint"}

    def _load(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        self.net = load_clip(self.model_name, self.device, self.precision)

    @property
    def max_length(self) -> int:
        ctx = int(self.net.config.text_config.max_position_embeddings)
        return min(self.options.max_length or ctx, ctx)

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or (512 if self.device.type == "cuda" else 128)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(
            [self.prefix + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        out = self.net.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        return out.pooler_output  # (B, projection_dim)
