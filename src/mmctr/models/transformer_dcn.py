"""Transformer + DCNv2 (1st place, MMCTR 2025): target-aware history tokens, a cross network and a DNN.

Every history token is the history item (id + tags + projected frozen embedding) concatenated with
the target item, so self-attention compares each click with the candidate from the first layer on.
The last `last_k` real positions and a max-pool over all real positions summarise the history; with
the target and its context they feed a DCNv2 cross network and a DNN in parallel, then an MLP head.

The padding mask matters: a public version of this model took the loader's mask (1 = real item) as
the attention's key_padding_mask (True = padding), which made every real item invisible. Here the
mask is derived from the ids in one place (`hist == 0` is padding) and tests/test_models.py checks
that outputs do not move when only the amount of left padding changes.
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
    request_history,
)


@dataclass
class TransformerDCNConfig(FeatureConfig):
    d_model: int = 128  # the concatenated (history item, target) token is projected to this width
    n_layers: int = 1
    n_heads: int = 2
    ffn_dim: int = 256
    transformer_dropout: float = 0.0
    positions: bool = True  # learned embeddings of "k-th most recent", added to every token
    last_k: int = 4  # this many most recent positions are read out one by one
    cross_layers: int = 3
    cross_rank: int = 0  # 0: full dim × dim cross weights; r > 0: each the product of two rank-r factors
    dnn_hidden: list[int] = field(default_factory=lambda: [1024, 512, 256])
    head_hidden: list[int] = field(default_factory=lambda: [64])
    net_dropout: float = 0.1
    batch_norm: bool = True


class TransformerDCN(nn.Module):
    config_class = TransformerDCNConfig

    def __init__(self, cfg: TransformerDCNConfig, items: ItemTable):
        super().__init__()
        self.cfg = cfg
        self.items = ItemEncoder(cfg, items)
        D = self.items.out_dim
        self.context = RowContext(cfg)
        # One Linear over [history item, target] split in two: W[h, t] = W_h h + W_t t, so the history
        # part runs on real positions only and the target part once per row. Same maths and parameters.
        self.token_hist = nn.Linear(D, cfg.d_model, bias=False)
        self.token_target = nn.Linear(D, cfg.d_model)
        self.positions = RecentPositions(SEQ_LEN, cfg.d_model) if cfg.positions else None
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.d_model, cfg.n_heads, cfg.ffn_dim, cfg.transformer_dropout)
            for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        in_dim = D + self.context.out_dim + (cfg.last_k + 1) * cfg.d_model
        self.cross = CrossNetV2(in_dim, cfg.cross_layers, cfg.cross_rank)
        self.dnn = MLP(in_dim, cfg.dnn_hidden, dropout=cfg.net_dropout, batch_norm=cfg.batch_norm)
        self.head_mlp = MLP(in_dim + self.dnn.out_dim, cfg.head_hidden, dropout=cfg.net_dropout)
        self.head = nn.Linear(self.head_mlp.out_dim, 1)

    def encode_group(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Tokens x (b, w, M) of rows of similar length, pad (b, w) True = padding → the last_k
        outputs and the max-pool over real positions, (b, (k+1)·M)."""
        b, w, _ = x.shape
        if self.positions is not None:
            x = x + self.positions(w)
        mask = attention_mask(pad)  # (b, 1, w, w)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x).masked_fill(pad.unsqueeze(-1), 0.0)  # (b, w, M); padding outputs are zero
        last = x[:, -self.cfg.last_k :].reshape(b, -1)  # (b, k·M), most recent position last
        # Max over real positions only; a row without history (cannot happen: min length 3) gets 0.
        pooled = x.masked_fill(pad.unsqueeze(-1), float("-inf")).amax(dim=1)  # (b, M)
        pooled = pooled.masked_fill(pad.all(dim=1, keepdim=True), 0.0)
        return torch.cat([last, pooled], dim=-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        target = self.items(batch.item_id)  # (B, D)
        groups = LengthGroups(batch.hist, min_width=self.cfg.last_k)
        hist_tok = self.token_hist(self.items(groups.ids))  # (P, M), real positions only
        target_tok = self.token_target(target)  # (B, M): every token of a row sees its target
        history = groups.gather(
            [
                self.encode_group(g.layout(hist_tok) + target_tok[g.rows].unsqueeze(1), g.pad)
                for g in groups.groups
            ]
        )  # (B, (k+1)·M)
        return self._logits(target, history, batch)  # (B,)

    def forward_request(self, batch: Batch) -> torch.Tensor:
        """Logits for N candidates that share one history (row 0's), as `forward` gives them. The
        history items are encoded and projected once, not once per candidate; each candidate's
        tokens are those plus its own target part. The history is left-padded to a multiple of
        REQUEST_BUCKET (masked, as `forward` masks a group's padding) so requests meet few shapes."""
        target = self.items(batch.item_id)  # (N, D)
        ids, n = request_history(batch.hist)  # (L',) real items then item 0
        L = ids.shape[0]
        ids = ids.roll(L - n)  # padding first, the most recent item last, as in a batch
        hist_tok = self.token_hist(self.items(ids))  # (L', M); padding is masked out of everything
        target_tok = self.token_target(target)  # (N, M)
        pad = (torch.arange(L, device=ids.device) < L - n).expand(target.shape[0], L)  # (N, L')
        history = self.encode_group(hist_tok.unsqueeze(0) + target_tok.unsqueeze(1), pad)
        return self._logits(target, history, batch)  # (N,)

    def _logits(self, target: torch.Tensor, history: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Target (B, D) and encoded history (B, (k+1)·M) with the row's context → logits (B,):
        the cross network and the DNN side by side, then the head; for both paths."""
        x0 = torch.cat([target, *self.context(batch), history], dim=-1)  # (B, in_dim)
        h = torch.cat([self.cross(x0), self.dnn(x0)], dim=-1)  # (B, in_dim + 256)
        return self.head(self.head_mlp(h)).squeeze(-1)

    def embedding_tables(self) -> list[nn.Embedding]:
        tables = self.items.embedding_tables() + self.context.embedding_tables()
        return tables + ([self.positions] if self.positions is not None else [])
