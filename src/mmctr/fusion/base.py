"""What a fusion receives and returns, and the linear algebra they share (L2 normalisation, PCA)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmctr.data.schema import Layout
from mmctr.errors import ConfigError


@dataclass
class FusionOptions:
    image_weight: float = 0.5  # clip_sum: weight of the image vector (text gets 1 - w)
    coclick_input_dim: int = 256  # coclick: content features are PCA-reduced to this first
    coclick_window: int = 3  # coclick: items at most this many clicks apart form a pair
    coclick_max_pairs: int = 2_000_000  # coclick: pairs sampled from the click sequences
    coclick_epochs: int = 3
    coclick_batch_size: int = 1024
    coclick_lr: float = 2e-3
    coclick_temperature: float = 0.1
    coclick_logq: bool = True  # correct in-batch negatives for item popularity (sampled softmax)
    coclick_bf16: bool = True  # bf16 autocast for the projection's matmuls (AMX CPUs: ~2x faster)


@dataclass
class FusionInput:
    features: dict[str, np.ndarray]  # modality -> (n_rows, D) raw encoder output; row == item id
    item_ids: np.ndarray  # the ids 1..N of real items (the rows fitted and written)
    n_rows: int  # N + 1 (row 0 is padding)
    dim: int
    seed: int
    layout: Layout
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> encoder identity
    options: FusionOptions = field(default_factory=FusionOptions)


@dataclass
class FusionResult:
    emb: np.ndarray  # (n_rows, dim) float32, row 0 zeros
    variance_kept: float | None  # share of the input variance the reduction kept (None: no PCA)
    info: dict[str, Any] = field(default_factory=dict)


def l2n(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


@dataclass
class PCA:
    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D), rows orthonormal, by decreasing variance
    explained: np.ndarray  # (k,) variance along each component
    total_variance: float

    @property
    def variance_kept(self) -> float:
        return float(self.explained.sum() / self.total_variance) if self.total_variance > 0 else 0.0

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T).astype(np.float32)


def fit_pca(x: np.ndarray, k: int, what: str = "features") -> PCA:
    """PCA by eigen-decomposition of the covariance (D x D; D is at most a few thousand here).

    Signs are fixed (largest loading positive) so that a refit gives the same embedding."""
    n, d = x.shape
    if k > d:
        raise ConfigError(f"cannot reduce {d}-d {what} to {k} dimensions by PCA; choose --dim <= {d}")
    mean = x.mean(axis=0, dtype=np.float64)
    xc = (x - mean).astype(np.float32)
    if n >= d:
        cov = (xc.T @ xc).astype(np.float64) / max(n - 1, 1)  # float32 matmul: fast; eigh in float64
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][:k]
        comps = vecs[:, order].T  # (k, D)
    else:
        # Fewer items than dimensions: decompose the (n, n) Gram matrix instead of the (d, d)
        # covariance; same eigenvalues, components recovered as xc.T @ u / sqrt(lambda).
        gram = (xc @ xc.T).astype(np.float64) / max(n - 1, 1)
        vals, u = np.linalg.eigh(gram)
        order = np.argsort(vals)[::-1][:k]
        scale = np.sqrt(np.maximum(vals[order], 1e-12) * max(n - 1, 1))
        comps = (xc.T.astype(np.float64) @ u[:, order] / scale).T  # (k, D)
    flip = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps *= flip[:, None]
    return PCA(
        mean=mean.astype(np.float32),
        components=comps.astype(np.float32),
        explained=np.clip(vals[order], 0, None),
        total_variance=float(np.clip(vals, 0, None).sum()),
    )


def output(inp: FusionInput, rows: np.ndarray) -> np.ndarray:
    """Place per-item vectors (len(item_ids), dim) at their ids in an (n_rows, dim) matrix."""
    emb = np.zeros((inp.n_rows, rows.shape[1]), dtype=np.float32)
    emb[inp.item_ids] = rows
    return emb
