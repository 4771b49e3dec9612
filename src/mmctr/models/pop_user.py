"""`pop_user`: the item's and the user's smoothed positive rates in the train split, combined by a
logistic fit (logit p = a * logit(item rate) + b * logit(user rate) + c). Some users like most of
what they rate and some little; this counts that too. Users are hashed into `user_buckets` rows
like the neural models' user_id field; a user never seen in train gets the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmctr.data.batches import Batch
from mmctr.data.reader import ItemTable, SplitArrays
from mmctr.models.layers import RateTable


@dataclass
class PopUserConfig:
    smoothing: float = 20.0  # pseudo-rows at the train prior, for item and user counts alike
    user_buckets: int = 262_144


class PopUser(nn.Module):
    config_class = PopUserConfig

    def __init__(self, cfg: PopUserConfig, items: ItemTable):
        super().__init__()
        self.cfg = cfg
        self.item_rate = RateTable(items.n_items, cfg.smoothing)
        self.user_rate = RateTable(cfg.user_buckets, cfg.smoothing)
        self.weights = nn.Parameter(torch.ones(2))  # on the item and the user rate's logits
        self.bias = nn.Parameter(torch.zeros(()))

    def _users(self, user_id: torch.Tensor) -> torch.Tensor:
        return torch.remainder(user_id, self.cfg.user_buckets)

    def fit_counts(self, split: SplitArrays) -> None:
        label = torch.from_numpy(split.label)
        self.item_rate.fit(torch.from_numpy(split.item_id), label)
        self.user_rate.fit(self._users(torch.from_numpy(split.user_id)), label)
        # start from the naive-Bayes combination: both logits, minus the prior's counted twice
        with torch.no_grad():
            self.bias.fill_(-float(torch.logit(self.item_rate.prior)))

    def forward(self, batch: Batch) -> torch.Tensor:
        own = batch.label if self.training else None
        item = self.item_rate(batch.item_id, own)  # (B,)
        user = self.user_rate(self._users(batch.user_id), own)  # (B,)
        return self.weights[0] * item + self.weights[1] * user + self.bias  # (B,)

    def embedding_tables(self) -> list[nn.Embedding]:
        return []
