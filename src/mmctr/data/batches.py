"""Batches: slices of the split arrays as tensors. No copies beyond the batch itself."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mmctr.data.reader import SplitArrays


@dataclass
class Batch:
    """One batch of rows. `hist` is left zero-padded, most recent item last, trimmed to the longest
    real history in the batch (so no column is padding in every row)."""

    user_id: torch.Tensor  # (B,) int64
    hist: torch.Tensor  # (B, L) int64, 0 = padding
    item_id: torch.Tensor  # (B,) int64, the target
    likes: torch.Tensor  # (B,) int64, the target's likes_level
    views: torch.Tensor  # (B,) int64
    label: torch.Tensor  # (B,) float32

    def __len__(self) -> int:
        return int(self.item_id.shape[0])

    @property
    def mask(self) -> torch.Tensor:
        return self.hist > 0  # (B, L) True = real item

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in self.__dict__.values()))


def make_batch(split: SplitArrays, rows: np.ndarray | slice) -> Batch:
    hist = split.hist[rows]
    longest = int(split.hist_len[rows].max()) if hist.shape[0] else 0
    hist = hist[:, hist.shape[1] - max(longest, 1) :]
    return Batch(
        user_id=torch.from_numpy(split.user_id[rows]),
        hist=torch.from_numpy(hist.astype(np.int64)),
        item_id=torch.from_numpy(split.item_id[rows]),
        likes=torch.from_numpy(split.likes[rows]),
        views=torch.from_numpy(split.views[rows]),
        label=torch.from_numpy(split.label[rows]),
    )


def iter_batches(
    split: SplitArrays,
    batch_size: int,
    shuffle: bool = False,
    rng: np.random.Generator | None = None,
    drop_last: bool = False,
    skip: int = 0,
) -> Iterator[Batch]:
    """Batches of `split` in row order, or shuffled by `rng`. `skip` leaves out the first batches
    (resuming mid-epoch: the same permutation is drawn, and the batches already done are passed)."""
    n = len(split)
    if shuffle:
        order = (rng or np.random.default_rng()).permutation(n)
        for start in range(skip * batch_size, n, batch_size):
            rows = np.sort(order[start : start + batch_size])  # sorted rows read memory in order
            if drop_last and len(rows) < batch_size:
                return
            yield make_batch(split, rows)
    else:
        for start in range(skip * batch_size, n, batch_size):
            if drop_last and start + batch_size > n:
                return
            yield make_batch(split, slice(start, min(start + batch_size, n)))


def n_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)
