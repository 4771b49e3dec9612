"""DIN + multi-head target attention + SENet + DNN (the MMCTR 2025 Task-2 model award).

The target item queries its history with several softmax attention heads (scaled dot products over
the real positions only), next to DIN's MLP-scored attention. Every input is then cut into fields
of `embedding_dim` width (an item vector is id | frozen-embedding projection | tags | [levels]);
a squeeze-excitation gate re-weights the fields per row before a DNN gives the logit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmctr.data.batches import Batch
from mmctr.data.reader import ItemTable
from mmctr.models.layers import (
    MLP,
    FeatureConfig,
    ItemEncoder,
    MultiHeadTargetAttention,
    RowContext,
    SqueezeExcitation,
    TargetAttention,
    encode_request,
    pack,
)


@dataclass
class DINMHTAConfig(FeatureConfig):
    n_heads: int = 4
    attention_dim: int = 256  # query/key/value width of the multi-head attention, all heads together
    din_attention: bool = True  # also pool the history with DIN's MLP-scored attention
    attention_hidden: list[int] = field(default_factory=lambda: [512, 256])
    attention_dropout: float = 0.1
    se_reduction: int = 3
    dnn_hidden: list[int] = field(default_factory=lambda: [1024, 512, 256])
    net_dropout: float = 0.1
    batch_norm: bool = True


class DINMHTA(nn.Module):
    config_class = DINMHTAConfig

    def __init__(self, cfg: DINMHTAConfig, items: ItemTable):
        super().__init__()
        self.cfg = cfg
        d = cfg.embedding_dim
        self.items = ItemEncoder(cfg, items)
        D = self.items.out_dim
        self.context = RowContext(cfg)
        self.mhta = MultiHeadTargetAttention(D, cfg.attention_dim, cfg.n_heads, out_dim=D, weights="softmax")
        self.din = (
            TargetAttention(D, tuple(cfg.attention_hidden), cfg.attention_dropout)
            if cfg.din_attention
            else None
        )
        # fields of width d: target and each pooled history are D/d fields; likes, views, [user]
        n_fields = (D // d) * (2 + int(cfg.din_attention)) + self.context.n_fields
        self.senet = SqueezeExcitation(n_fields, cfg.se_reduction)
        self.dnn = MLP(n_fields * d, cfg.dnn_hidden, dropout=cfg.net_dropout, batch_norm=cfg.batch_norm)
        self.head = nn.Linear(self.dnn.out_dim, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        target = self.items(batch.item_id)  # (B, D)
        p = pack(batch.hist)  # only real history positions
        keys = self.items(p.ids)  # (P, D)
        vectors = [target, self.mhta(target, keys, p.rows)]  # (B, D) each
        if self.din is not None:
            vectors.append(self.din(target, keys, p.rows))
        return self._logits(vectors, batch)  # (B,)

    def forward_request(self, batch: Batch) -> torch.Tensor:
        """Logits for N candidates that share one history (row 0's), as `forward` gives them: the
        history is encoded and projected once, not once per candidate, and padded to a multiple of
        REQUEST_BUCKET (masked) so that requests meet few shapes."""
        target, keys, n = encode_request(self.items, batch)  # (N, D), (L', D)
        vectors = [target, self.mhta.forward_shared(target, keys, n)]
        if self.din is not None:
            vectors.append(self.din.forward_shared(target, keys, n_keys=n))
        return self._logits(vectors, batch)  # (N,)

    def _logits(self, vectors: list[torch.Tensor], batch: Batch) -> torch.Tensor:
        """The target and pooled histories (B, D) each, with the row's context → logits (B,): the
        part `forward` and `forward_request` share."""
        vectors = [*vectors, *self.context(batch)]  # (B, d) each after the item vectors
        B, d = vectors[0].shape[0], self.cfg.embedding_dim
        fields = torch.cat(vectors, dim=-1).view(B, -1, d)  # (B, F, d)
        h = self.dnn(self.senet(fields).reshape(B, -1))  # (B, F·d) → (B, 256)
        return self.head(h).squeeze(-1)

    def embedding_tables(self) -> list[nn.Embedding]:
        return self.items.embedding_tables() + self.context.embedding_tables()
