"""`pop`: the item's smoothed positive rate in the train split: the counting baseline every CTR table
needs, since a model that cannot beat it has learned nothing beyond item popularity.

The rate's logit passes through one learned scale and bias (a calibration: the ranking, hence the
AUC, is that of the rate itself). The counts are taken from the train split before training
(`fit_counts`, called by the training loop) and saved with the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmctr.data.batches import Batch
from mmctr.data.reader import ItemTable, SplitArrays
from mmctr.models.layers import RateTable


@dataclass
class PopConfig:
    smoothing: float = 20.0  # pseudo-rows at the train prior added to every item's counts


class Pop(nn.Module):
    config_class = PopConfig

    def __init__(self, cfg: PopConfig, items: ItemTable):
        super().__init__()
        self.cfg = cfg
        self.item_rate = RateTable(items.n_items, cfg.smoothing)
        self.scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(()))

    def fit_counts(self, split: SplitArrays) -> None:
        self.item_rate.fit(torch.from_numpy(split.item_id), torch.from_numpy(split.label))

    def forward(self, batch: Batch) -> torch.Tensor:
        own = batch.label if self.training else None
        return self.scale * self.item_rate(batch.item_id, own) + self.bias  # (B,)

    def embedding_tables(self) -> list[nn.Embedding]:
        return []
