"""`lr`: logistic regression over the id, tag and level fields: one learned weight per item id, per
tag (summed over the item's tags), per likes and views level, and per hashed user id. No history,
no embedding, no interaction: what a linear model of the categorical fields gets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmctr.data.batches import Batch
from mmctr.data.reader import ItemTable
from mmctr.data.schema import N_LEVELS


@dataclass
class LRConfig:
    use_tags: bool = True
    use_user_id: bool = True
    user_buckets: int = 262_144


class LR(nn.Module):
    config_class = LRConfig

    def __init__(self, cfg: LRConfig, items: ItemTable):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("tags", torch.as_tensor(items.tags, dtype=torch.long), persistent=False)
        self.item_w = nn.Embedding(items.n_items, 1)
        self.tag_w = nn.Embedding(items.n_tags, 1, padding_idx=0) if cfg.use_tags else None
        self.likes_w = nn.Embedding(N_LEVELS, 1)
        self.views_w = nn.Embedding(N_LEVELS, 1)
        self.user_w = nn.Embedding(cfg.user_buckets, 1) if cfg.use_user_id else None
        for t in self.embedding_tables():
            nn.init.zeros_(t.weight)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, batch: Batch) -> torch.Tensor:
        logit = self.item_w(batch.item_id) + self.likes_w(batch.likes) + self.views_w(batch.views)  # (B, 1)
        if self.tag_w is not None:
            logit = logit + self.tag_w(self.tags[batch.item_id]).sum(dim=1)  # (B, 5, 1) → (B, 1)
        if self.user_w is not None:
            logit = logit + self.user_w(torch.remainder(batch.user_id, self.cfg.user_buckets))
        return logit.squeeze(-1) + self.bias  # (B,)

    def embedding_tables(self) -> list[nn.Embedding]:
        tables = [self.item_w, self.likes_w, self.views_w]
        return tables + [t for t in (self.tag_w, self.user_w) if t is not None]
