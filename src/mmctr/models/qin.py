"""QIN-style Quadratic Interest Network (2nd place, MMCTR 2025): ReLU target attention, quadratic layers.

Adaptive sparse target attention: the target queries its real history positions with scaled dot
products passed through ReLU instead of a softmax, so unrelated clicks get exactly zero weight and
the weights need not sum to one; the pooled interest is added to the target (a residual). The
target, the interest and the context fields then go through quadratic layers, each a product of two
linear maps of its input, which model high-order feature interactions explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmctr.data.batches import Batch
from mmctr.data.reader import ItemTable
from mmctr.models.layers import (
    FeatureConfig,
    ItemEncoder,
    MultiHeadTargetAttention,
    QuadraticLayer,
    RowContext,
    encode_request,
    pack,
)


@dataclass
class QINConfig(FeatureConfig):
    n_heads: int = 1
    attention_dim: int = 128  # query/key/value width of the sparse attention
    qnn_hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    net_dropout: float = 0.1


class QIN(nn.Module):
    config_class = QINConfig

    def __init__(self, cfg: QINConfig, items: ItemTable):
        super().__init__()
        self.cfg = cfg
        self.items = ItemEncoder(cfg, items)
        D = self.items.out_dim
        self.context = RowContext(cfg)
        self.asta = MultiHeadTargetAttention(D, cfg.attention_dim, cfg.n_heads, out_dim=D, weights="relu")
        dims = [2 * D + self.context.out_dim, *cfg.qnn_hidden]
        self.qnn = nn.Sequential(
            *(QuadraticLayer(a, b, cfg.net_dropout) for a, b in zip(dims[:-1], dims[1:], strict=True))
        )
        self.head = nn.Linear(dims[-1], 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        target = self.items(batch.item_id)  # (B, D)
        p = pack(batch.hist)  # only real history positions
        interest = self.asta(target, self.items(p.ids), p.rows) + target  # (B, D)
        return self._logits(target, interest, batch)  # (B,)

    def forward_request(self, batch: Batch) -> torch.Tensor:
        """`forward`'s logits for N candidates sharing row 0's history, encoded once and bucketed
        (as `DINMHTA.forward_request`)."""
        target, keys, n = encode_request(self.items, batch)  # (N, D), (L', D)
        interest = self.asta.forward_shared(target, keys, n) + target  # (N, D)
        return self._logits(target, interest, batch)  # (N,)

    def _logits(self, target: torch.Tensor, interest: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Target and interest (B, D) with the row's context → logits (B,), for both paths."""
        h = self.qnn(torch.cat([target, interest, *self.context(batch)], dim=-1))  # (B, in_dim) → (B, 128)
        return self.head(h).squeeze(-1)

    def embedding_tables(self) -> list[nn.Embedding]:
        return self.items.embedding_tables() + self.context.embedding_tables()
