"""What every encoder shares: run options, device and precision choice, and an identity for the cache.

An encoder is built cheaply (no weights loaded) so that a run whose outputs are all cached never
loads a model; the model is loaded on the first `encode` call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmctr.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class EncoderOptions:
    """Run options shared by all encoders. None means "the encoder's own default"."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    batch_size: int | None = None
    image_size: int | None = None  # input resolution for image encoders
    workers: int | None = None  # image decoding processes
    text_prefix: str | None = None  # e.g. "passage: " for E5
    max_length: int | None = None  # text tokens kept


def auto_threads() -> int:
    """Torch threads for a run: the cores not already busy with other processes.

    OpenMP threads wait for each other at every op, so when another process holds one of the cores
    every op waits for a preempted thread: on the shared 2-core machine 2 threads measured 10-15x
    slower than 1 (docs/benchmarks/embeddings.md). With idle cores this is torch's default."""
    cores = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, min(torch.get_num_threads(), cores - busy))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} unknown; expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        # Half precision where it is cheap and safe (GPU); on a CPU bf16 is opt-in because its AUC
        # cost is measured, not assumed (docs/benchmarks/embeddings.md).
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device; on a CPU use bf16 or fp32")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on the CPU (AMX makes bf16 matmuls several times faster); on CUDA the model
    itself is cast to half, so nothing more is needed."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cast_model(model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    model = model.to(device).eval()
    if precision == "fp16":
        model = model.half()
    return model


def fingerprint(name_or_path: str) -> str:
    """Identify model weights for the cache key without reading them: a local directory or file is
    fingerprinted by the names, sizes and mtimes of its files (so a retrained model at the same
    path is not served stale outputs); a hub name stands for itself."""
    p = Path(name_or_path)
    if not p.exists():
        return name_or_path
    files = sorted(f for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file())
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return f"{p.resolve()}#{h.hexdigest()[:16]}"


class Encoder(ABC):
    """A model that maps one modality of an item to a vector. Subclasses own their preprocessing."""

    modality: str  # "text" | "image"
    family: str  # registry family, e.g. "st", "clip"

    def __init__(self, model: str, options: EncoderOptions):
        self.model_name = model
        self.options = options
        self.device = resolve_device(options.device)
        self.precision = resolve_precision(options.precision, self.device)
        self.calls = 0  # batches encoded; tests count these to prove the cache is used
        self._loaded = False
        self.name = ""  # the name the user gave (set by the registry), e.g. "minilm"

    @property
    def spec(self) -> str:
        return self.name or f"{self.family}:{self.model_name}"

    def identity(self) -> dict[str, Any]:
        """Everything that changes the output vectors: model weights, preprocessing, precision.
        The cache key is a hash of this."""
        return {
            "family": self.family,
            "model": fingerprint(self.model_name),
            "precision": self.precision,
            **self.preprocessing(),
        }

    def cache_key(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:16]

    @abstractmethod
    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing settings (resolution, normalisation, prefix, max length)."""

    def load(self) -> None:
        if not self._loaded:
            try:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # one bar per run is ours (items/s)
            except ImportError:
                pass
            self._load()
            self._loaded = True

    @property
    def loaded(self) -> bool:
        return self._loaded

    @abstractmethod
    def _load(self) -> None: ...

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or (256 if self.device.type == "cuda" else 64)


class TextEncoder(Encoder):
    modality = "text"

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), D) float32 vectors for one batch of titles."""
        self.load()
        self.calls += 1
        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self._encode(texts)
        return out.float().cpu().numpy()

    @abstractmethod
    def _encode(self, texts: list[str]) -> torch.Tensor: ...


class ImageEncoder(Encoder):
    modality = "image"

    @abstractmethod
    def transform(self) -> Callable[[bytes], np.ndarray]:
        """A picklable function from encoded image bytes to a (3, H, W) float32 array; it runs in
        the decoding worker processes, so it must not touch the model."""

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """(B, D) float32 vectors for a (B, 3, H, W) batch made by `transform`."""
        self.load()
        self.calls += 1
        x = torch.from_numpy(pixels).to(self.device)
        if self.precision == "fp16":
            x = x.half()
        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self._encode(x)
        return out.float().cpu().numpy()

    @abstractmethod
    def _encode(self, pixels: torch.Tensor) -> torch.Tensor: ...


def chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
