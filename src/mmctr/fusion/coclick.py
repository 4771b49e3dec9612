"""`coclick`: bring the recommendation signal into the content embedding.

A small projection of the fused content features is trained, contrastively, to place items that
users click near each other close together (symmetric InfoNCE over co-clicked pairs, in-batch
negatives). It learns only from which items share click histories (item_seq.parquet, or the train
split's histories when that file is absent), never from CTR labels or the CTR model: it is trained
separately, before and apart from the CTR model, as the Task-1 rules require. Because it maps
content to the output, items nobody clicked (cold items) get an embedding too.

Shape of the projection: x (content, PCA to `input_dim`) -> l2n(W x + MLP(x)), with W initialised to
the top-`dim` principal directions and the MLP's last layer to zero, so training starts from the
`concat_pca` embedding and moves it toward the co-click structure.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from mmctr.errors import DataError
from mmctr.fusion.base import FusionInput, FusionResult, fit_pca, l2n, output


def _sequences(layout) -> tuple[Path, np.ndarray, np.ndarray]:
    """(source file, flat item ids, row offsets) of the users' click sequences."""
    path = layout.item_seq if layout.item_seq.exists() else layout.split("train")
    if not path.exists():
        raise DataError(
            layout.item_seq, None, "coclick needs click sequences: item_seq.parquet or the train split"
        )
    try:
        col = pq.read_table(path, columns=["item_seq"]).column("item_seq").combine_chunks()
    except (pa.ArrowInvalid, KeyError, OSError) as err:
        raise DataError(path, "item_seq", f"cannot be read: {err}") from err
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        raise DataError(path, "item_seq", f"has type {col.type}; expected a list of item ids")
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.asarray(col.offsets, dtype=np.int64)
    return path, values, offsets


def cooccurrence_pairs(
    values: np.ndarray,
    offsets: np.ndarray,
    n_rows: int,
    window: int,
    max_pairs: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b) of distinct items clicked at most `window` positions apart by the same user,
    subsampled to `max_pairs`. Padding (0) never pairs."""
    if values.size and (values.min() < 0 or values.max() >= n_rows):
        raise DataError("item_seq", "item_seq", f"holds ids outside 0..{n_rows - 1} (the item table)")
    row = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    a_all, b_all = [], []
    for k in range(1, window + 1):
        a, b = values[:-k], values[k:]
        ok = (row[:-k] == row[k:]) & (a > 0) & (b > 0) & (a != b)
        a_all.append(a[ok])
        b_all.append(b[ok])
    a = np.concatenate(a_all) if a_all else np.empty(0, np.int64)
    b = np.concatenate(b_all) if b_all else np.empty(0, np.int64)
    if a.size > max_pairs:
        keep = rng.choice(a.size, size=max_pairs, replace=False)
        a, b = a[keep], b[keep]
    return a, b


class CoClickProjection(nn.Module):
    def __init__(self, in_dim: int, dim: int, hidden: int = 512):
        super().__init__()
        self.linear = nn.Linear(in_dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        with torch.no_grad():
            # start at the top-`dim` principal directions (inputs are PCA coordinates) ...
            self.linear.weight.copy_(torch.eye(dim, in_dim))
            # ... with the non-linear correction switched off
            self.mlp[-1].weight.zero_()
            self.mlp[-1].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_dim) -> (B, dim), unit norm
        return F.normalize(self.linear(x) + self.mlp(x), dim=-1)


def info_nce(
    za: torch.Tensor, zb: torch.Tensor, tau: float, log_q: tuple[torch.Tensor, torch.Tensor] | None
) -> torch.Tensor:
    """Symmetric InfoNCE: each a must pick its own b among the batch's b's, and vice versa.
    `log_q` (per b / per a log sampling frequency) removes the popularity bias of in-batch
    negatives (popular items are negatives more often than their share of the catalogue)."""
    logits = za @ zb.T / tau  # (B, B)
    target = torch.arange(len(za))
    if log_q is None:
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    qa, qb = log_q
    return 0.5 * (
        F.cross_entropy(logits - qb[None, :], target) + F.cross_entropy(logits.T - qa[None, :], target)
    )


def coclick(inp: FusionInput, log=print) -> FusionResult:
    """Content features (text + image, L2-normalised, concatenated, PCA) projected by a co-click
    contrastive model to `dim`, L2-normalised."""
    o = inp.options
    rng = np.random.default_rng(inp.seed)
    torch.manual_seed(inp.seed)
    mods = [m for m in ("text", "image") if m in inp.features]
    x = np.concatenate([l2n(inp.features[m][inp.item_ids]) for m in mods], axis=1)
    k = min(max(o.coclick_input_dim, inp.dim), x.shape[1])
    pca = fit_pca(x, k, "concatenated content features")
    xp = pca.transform(x)
    xp /= np.sqrt(pca.explained[0]) + 1e-12  # O(1) inputs for the MLP; directions unchanged
    feats = np.zeros((inp.n_rows, k), dtype=np.float32)
    feats[inp.item_ids] = xp

    source, values, offsets = _sequences(inp.layout)
    a, b = cooccurrence_pairs(values, offsets, inp.n_rows, o.coclick_window, o.coclick_max_pairs, rng)
    if a.size < o.coclick_batch_size:
        raise DataError(source, "item_seq", f"only {a.size} co-click pairs; too few to train coclick")
    freq = np.bincount(np.concatenate([a, b]), minlength=inp.n_rows).astype(np.float64)
    log_q = torch.from_numpy(np.log(np.maximum(freq, 1) / freq.sum()).astype(np.float32))

    model = CoClickProjection(k, inp.dim)
    opt = torch.optim.AdamW(model.parameters(), lr=o.coclick_lr, weight_decay=1e-4)
    x_t = torch.from_numpy(feats)
    steps_per_epoch = a.size // o.coclick_batch_size
    total = steps_per_epoch * o.coclick_epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.coclick_lr, total_steps=total, pct_start=0.1)
    t0 = time.perf_counter()
    losses = []
    model.train()
    for epoch in range(o.coclick_epochs):
        perm = rng.permutation(a.size)
        running = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * o.coclick_batch_size : (s + 1) * o.coclick_batch_size]
            ia, ib = torch.from_numpy(a[idx]), torch.from_numpy(b[idx])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=o.coclick_bf16):
                za, zb = model(x_t[ia]).float(), model(x_t[ib]).float()
            q = (log_q[ia], log_q[ib]) if o.coclick_logq else None
            loss = info_nce(za, zb, o.coclick_temperature, q)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
        losses.append(running / max(steps_per_epoch, 1))
        log(f"coclick epoch {epoch + 1}/{o.coclick_epochs}: InfoNCE {losses[-1]:.4f}")
    model.eval()
    with torch.inference_mode():  # the output in full precision
        rows = torch.cat([model(x_t[torch.from_numpy(c)]) for c in np.array_split(inp.item_ids, 16)])
    info = {
        "pairs_from": str(source),
        "pairs": int(a.size),
        "input_dim": k,
        "input_variance_kept": round(pca.variance_kept, 4),
        "epochs": o.coclick_epochs,
        "steps": total,
        "loss_by_epoch": [round(v, 4) for v in losses],
        "train_seconds": round(time.perf_counter() - t0, 2),
        "seed": inp.seed,
        "logq_correction": o.coclick_logq,
        "temperature": o.coclick_temperature,
        "bf16": o.coclick_bf16,
    }
    return FusionResult(output(inp, rows.numpy().astype(np.float32)), pca.variance_kept, info)
