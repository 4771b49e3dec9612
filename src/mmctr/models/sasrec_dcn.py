"""SASRec + DCNv2 (a published Task 1&2 solution): a self-attentive user vector, then cross and deep towers.

The history alone (no target inside) goes through SASRec-style transformer blocks with learned
positions; the output at the most recent real position is the user vector. User vector, target item
and context (the target's likes/views levels, optionally the user id) are concatenated and fed to a
DCNv2 cross network and a deep tower in parallel; their outputs are concatenated into the logit.
Because the user vector does not depend on the target, a serving system can compute it once per
request and reuse it for every candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmctr.data.batches import Batch
from mmctr.data.reader import ItemTable
from mmctr.data.schema import SEQ_LEN
from mmctr.models.layers import (
    MLP,
    CrossNetV2,
    FeatureConfig,
    ItemEncoder,
    LengthGroups,
    RecentPositions,
    RowContext,
    TransformerBlock,
    attention_mask,
)


@dataclass
class SASRecDCNConfig(FeatureConfig):
    n_layers: int = 2
    n_heads: int = 4
    ffn_dim: int = 512
    transformer_dropout: float = 0.0
    causal: bool = True  # SASRec's left-to-right attention; the user vector is the last position's
    context_dim: int = 16  # width of the likes/views (context) embeddings
    cross_layers: int = 3
    cross_rank: int = 0  # 0: full dim × dim cross weights; r > 0: each the product of two rank-r factors
    dnn_hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    net_dropout: float = 0.1
    batch_norm: bool = True


class SASRecDCN(nn.Module):
    config_class = SASRecDCNConfig

    def __init__(self, cfg: SASRecDCNConfig, items: ItemTable):
        super().__init__()
        self.cfg = cfg
        self.items = ItemEncoder(cfg, items)
        D = self.items.out_dim  # the transformer runs at the item width (192 with tags)
        self.context = RowContext(cfg, level_dim=cfg.context_dim)
        self.positions = RecentPositions(SEQ_LEN, D)
        self.blocks = nn.ModuleList(
            TransformerBlock(D, cfg.n_heads, cfg.ffn_dim, cfg.transformer_dropout)
            for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(D)
        in_dim = 2 * D + self.context.out_dim
        self.cross = CrossNetV2(in_dim, cfg.cross_layers, cfg.cross_rank)
        self.dnn = MLP(in_dim, cfg.dnn_hidden, dropout=cfg.net_dropout, batch_norm=cfg.batch_norm)
        self.head = nn.Linear(in_dim + self.dnn.out_dim, 1)

    def encode_group(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Item vectors x (b, w, D) of rows of similar length, pad (b, w) → user vectors (b, D)."""
        x = x + self.positions(x.shape[1])  # (b, w, D)
        mask = attention_mask(pad, causal=self.cfg.causal)  # (b, 1, w, w)
        for block in self.blocks:
            x = block(x, mask)
        # Left padding puts the most recent real item in the last column of every row that has one.
        user = self.norm(x[:, -1])  # (b, D)
        return user.masked_fill(pad[:, -1:], 0.0)  # a row without history (min length is 3) gets 0

    def user_vector(self, hist: torch.Tensor) -> torch.Tensor:
        """hist (B, L) left-padded ids → (B, D), the transformer output at the most recent item."""
        groups = LengthGroups(hist)
        items = self.items(groups.ids)  # (P, D), real positions only
        return groups.gather([self.encode_group(g.layout(items), g.pad) for g in groups.groups])

    def forward(self, batch: Batch) -> torch.Tensor:
        # The user vector ignores the target: compute it once per distinct history (a 100-candidate
        # request has one), in groups of similar length.
        uniq, inverse = torch.unique(batch.hist, dim=0, return_inverse=True)
        user = self.user_vector(uniq)[inverse]  # (B, D)
        target = self.items(batch.item_id)  # (B, D)
        x0 = torch.cat([user, target, *self.context(batch)], dim=-1)  # (B, in_dim)
        h = torch.cat([self.cross(x0), self.dnn(x0)], dim=-1)  # (B, in_dim + 128)
        return self.head(h).squeeze(-1)  # (B,) logits

    def embedding_tables(self) -> list[nn.Embedding]:
        return self.items.embedding_tables() + self.context.embedding_tables() + [self.positions]
