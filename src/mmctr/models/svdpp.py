"""SVD++ (Koren, KDD 2008) as a click model: the user is their factor plus their history's factors.

A factor model whose user side is the user's own factor plus the normalised sum of the factors of
the items in the history, with biases:

    logit = b + b_item + b_likes + b_views + b_len(|H|) + mean_{j in H} w_j + b_user
            + q_item · (p_user + |H|^-alpha * sum_{j in H} y_j)

q (the target) and y (the history) are two item encoders (id ⊕ tags ⊕ projected frozen embedding,
as in every model). mean w_j lets the history speak for how readily the user likes what they rate.
A user never seen in train keeps the p_user and b_user of initialisation (near zero), so for such
users the history terms carry the user side, which is what a time split of real behaviour data asks
for (on MovieLens-100k, 85% of the valid rows come from users who have no train row). There is no
MLP: every term is a bias or a dot product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmctr.data.batches import Batch
from mmctr.data.reader import ItemTable
from mmctr.data.schema import N_LEVELS, SEQ_LEN
from mmctr.models.layers import FeatureConfig, ItemEncoder, UserEmbedding


@dataclass
class SVDppConfig(FeatureConfig):
    embedding_dim: int = 8  # width of each item-encoder part; the factor width is out_dim
    history_alpha: float = 0.5  # the history sum is divided by |H| ** alpha (SVD++: 0.5)
    use_history: bool = True  # off: a biased matrix factorisation (an ablation)


class SVDpp(nn.Module):
    config_class = SVDppConfig

    def __init__(self, cfg: SVDppConfig, items: ItemTable):
        super().__init__()
        self.cfg = cfg
        self.items = ItemEncoder(cfg, items)  # q: the target's factor
        self.hist_items = ItemEncoder(cfg, items)  # y: a history item's factor
        D = self.items.out_dim
        self.item_bias = nn.Embedding(items.n_items, 1)
        self.hist_bias = nn.Embedding(items.n_items, 1, padding_idx=0)  # w
        self.len_bias = nn.Embedding(SEQ_LEN + 1, 1)
        self.likes_bias = nn.Embedding(N_LEVELS, 1)
        self.views_bias = nn.Embedding(N_LEVELS, 1)
        # a user's factor (D) and bias (1) in one row
        self.user = UserEmbedding(cfg.user_buckets, D + 1) if cfg.use_user_id else None
        for t in (self.item_bias, self.hist_bias, self.len_bias, self.likes_bias, self.views_bias):
            nn.init.zeros_(t.weight)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, batch: Batch) -> torch.Tensor:
        ids = batch.item_id
        logit = (
            self.bias
            + self.item_bias(ids).squeeze(-1)
            + self.likes_bias(batch.likes).squeeze(-1)
            + self.views_bias(batch.views).squeeze(-1)
        )  # (B,)
        q = self.items(ids)  # (B, D)
        user = torch.zeros_like(q)
        if self.cfg.use_history:
            hist = batch.hist  # (B, L), 0 = padding
            mask = (hist > 0).to(q.dtype)
            n = mask.sum(dim=1)  # (B,)
            n1 = n.clamp(min=1)  # an empty history divides by 1
            y = self.hist_items(hist) * mask.unsqueeze(-1)  # (B, L, D); padding rows are zeroed
            user = user + y.sum(dim=1) / n1.pow(self.cfg.history_alpha).unsqueeze(-1)
            w = self.hist_bias(hist).squeeze(-1) * mask  # (B, L)
            logit = logit + w.sum(dim=1) / n1
            logit = logit + self.len_bias(n.long().clamp(max=SEQ_LEN)).squeeze(-1)
        if self.user is not None:
            pu = self.user(batch.user_id)  # (B, D + 1)
            user = user + pu[:, :-1]
            logit = logit + pu[:, -1]
        return logit + (q * user).sum(dim=-1)  # (B,)

    def embedding_tables(self) -> list[nn.Embedding]:
        tables = self.items.embedding_tables() + self.hist_items.embedding_tables()
        tables += [self.item_bias, self.hist_bias, self.len_bias, self.likes_bias, self.views_bias]
        return tables + ([self.user.emb] if self.user is not None else [])
