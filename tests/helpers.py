"""Small builders shared by test modules (imported as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmctr.data.reader import ItemTable


def random_items(n: int, seed: int = 0) -> ItemTable:
    """n items with random tags, 128-d embeddings and levels; row 0 is the padding item (zeros)."""
    rng = np.random.default_rng(seed)
    items = ItemTable(
        rng.integers(0, 20, (n, 5)).astype(np.int32),
        rng.normal(size=(n, 128)).astype(np.float32),
        rng.integers(0, 11, n),
        rng.integers(0, 11, n),
    )
    items.tags[0] = 0
    items.emb[0] = 0
    return items


def as_if_trained(model: nn.Module, seed: int = 0) -> nn.Module:
    """Batch norms with running statistics and affine weights away from their initial values, so
    that folding them into the linears before them is exercised."""
    g = torch.Generator().manual_seed(seed)
    for bn in [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]:
        bn.running_mean.normal_(0, 0.5, generator=g)
        bn.running_var.uniform_(0.5, 2.0, generator=g)
        bn.weight.data.uniform_(0.5, 1.5, generator=g)
        bn.bias.data.normal_(0, 0.1, generator=g)
    return model
