"""DIN (Deep Interest Network), as configured by the MMCTR organisers' FuxiCTR baseline.

Target and history items are id + tags + projected frozen embedding; the history is pooled by
target attention (no softmax); the target's likes/views levels are categorical fields; a DNN with
batch norm and dropout gives the logit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmctr.data.batches import Batch
from mmctr.data.reader import ItemTable
from mmctr.models.layers import (
    MLP,
    REQUEST_BUCKET,
    FeatureConfig,
    ItemEncoder,
    RowContext,
    TargetAttention,
    pack,
    request_history,
)


@dataclass
class DINConfig(FeatureConfig):
    dnn_hidden: list[int] = field(default_factory=lambda: [1024, 512, 256])
    attention_hidden: list[int] = field(default_factory=lambda: [512, 256])
    attention_dropout: float = 0.1
    attention_softmax: bool = False
    net_dropout: float = 0.1
    batch_norm: bool = True
    use_history: bool = True  # off: the same model with the history removed (an ablation)


class DIN(nn.Module):
    config_class = DINConfig

    def __init__(self, cfg: DINConfig, items: ItemTable):
        super().__init__()
        self.cfg = cfg
        self.items = ItemEncoder(cfg, items)
        self.context = RowContext(cfg)
        D = self.items.out_dim
        self.attention = TargetAttention(
            D, tuple(cfg.attention_hidden), cfg.attention_dropout, cfg.attention_softmax
        )
        in_dim = D + (D if cfg.use_history else 0) + self.context.out_dim
        self.dnn = MLP(in_dim, cfg.dnn_hidden, dropout=cfg.net_dropout, batch_norm=cfg.batch_norm)
        self.head = nn.Linear(self.dnn.out_dim, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        B = batch.item_id.shape[0]
        p = pack(batch.hist)  # real history positions only
        # Every distinct item of the batch (targets and history) is encoded once.
        uniq, inv = torch.unique(torch.cat([batch.item_id, p.ids]), return_inverse=True)
        table = self.items.encode(uniq)  # (U, D)
        target = table.index_select(0, inv[:B])  # (B, D)
        fields = [target]
        if self.cfg.use_history:
            fields.append(self.attention(target, table, p.rows, key_index=inv[B:]))  # (B, D)
        return self._logits(fields, batch)  # (B,)

    def forward_request(self, batch: Batch, bucket: int = REQUEST_BUCKET) -> torch.Tensor:
        """Logits for N candidates that share one history (row 0's): the user side is computed once.
        The history is padded up to a multiple of `bucket` (masked out of the attention), so that
        requests meet a handful of shapes, which `mmctr.serving.warm_up` compiles in advance."""
        tables = self.serving_tables
        ids = batch.item_id
        # no dedup of the candidates: the varying size of their distinct set would be a new shape
        target = tables["items"][ids] if tables else self.items.encode(ids)  # (N, D)
        fields = [target]
        if self.cfg.use_history:
            padded, n = request_history(batch.hist, bucket)  # (L',) item 0 after the real ones
            if tables:
                keys = tables["items"][padded]  # (L', D)
                parts = {"hq": tables["hq"][ids], "hk": tables["hk"][padded]}
            else:
                keys, parts = self.items.encode(padded), {}
            keys[n:] = 0  # item 0 would encode to the projection's bias
            fields.append(self.attention.forward_shared(target, keys, n_keys=n, **parts))  # (N, D)
        return self._logits(fields, batch)  # (N,)

    def _logits(self, fields: list[torch.Tensor], batch: Batch) -> torch.Tensor:
        """Target [and pooled history] (B, D) with the row's context → logits (B,), for both paths."""
        h = self.dnn(torch.cat([*fields, *self.context(batch)], dim=-1))  # (B, in_dim) → (B, 256)
        return self.head(h).squeeze(-1)

    @torch.no_grad()
    def prepare_serving(self, rows_per_chunk: int = 8192) -> None:
        """Encode every item once, with its target and key parts of the attention's first layer,
        into tables that `forward_request` then only indexes. Memory: n_items × (D + 2·H) values
        (91,718 items × (192 + 1,024) in bf16 is 223 MB at the organisers' sizes). For a frozen
        serving copy (`mmctr.serving.for_serving`): the tables do not follow later weight updates."""
        n = self.items.id_emb.num_embeddings
        items, hq, hk = [], [], []
        for lo in range(0, n, rows_per_chunk):
            e = self.items.encode(torch.arange(lo, min(n, lo + rows_per_chunk)))
            q, k = self.attention.item_parts(e)
            items.append(e), hq.append(q), hk.append(k)
        for name, parts in (("items", items), ("hq", hq), ("hk", hk)):
            self.register_buffer(f"serve_{name}", torch.cat(parts), persistent=False)

    @property
    def serving_tables(self) -> dict[str, torch.Tensor] | None:
        if getattr(self, "serve_items", None) is None:
            return None
        return {"items": self.serve_items, "hq": self.serve_hq, "hk": self.serve_hk}

    def embedding_tables(self) -> list[nn.Embedding]:
        return self.items.embedding_tables() + self.context.embedding_tables()
