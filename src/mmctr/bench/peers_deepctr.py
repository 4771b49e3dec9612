"""deepctr-torch's DIN (PyPI `deepctr-torch`) as a benchmark peer, on mmctr's arrays.

What it sees (everything its DIN can take from the MMCTR data):
- sparse `item_id` (the target; vocab n_items, dim 64) and `hist_item_id`, a VarLenSparseFeat of the
  last `max_len` history ids sharing the `item_id` table, with `seq_length`: the attention keys;
- sparse `likes_level`, `views_level` (vocab 11, dim 64);
- `item_tags` of the target as a VarLenSparseFeat (max 5, mean-pooled, dim 64) into the DNN;
- `item_emb` of the target as a 128-d DenseFeat, concatenated raw into the DNN input.
What it cannot take: tags or frozen embeddings of *history* items (its attention only pools sparse
id embeddings), so its history is ids only. DeepCTR's DIN masks keys by length from the left, so the
left-padded histories are re-packed to the front, oldest first.

Training mirrors `BaseModel.fit` step for step (its DataLoader over one float tensor of all
features, BCE with reduction='sum', its L2 on embedding tables); the step is re-stated here only so
that each step can be timed, which `fit` does not expose. AUC training calls `fit` itself.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from mmctr.bench.spec import BenchSettings
from mmctr.data.reader import Dataset, SplitArrays
from mmctr.serving import Request
from mmctr.training.metrics import auc


def _right_packed(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded histories → real items first (oldest first), zeros after; and their lengths."""
    order = np.argsort(hist == 0, axis=1, kind="stable")  # real positions first, order kept
    packed = np.take_along_axis(hist, order, axis=1)
    return packed, (hist > 0).sum(axis=1)


class DeepCTRDIN:
    precision = "fp32"
    inputs = (
        "item_id, likes_level, views_level (sparse, dim 64); target item_tags (varlen mean, dim 64); "
        "target item_emb_d128 (128-d dense, into the DNN raw); history: item ids only "
        "(VarLenSparseFeat sharing the item_id table), right-packed with seq_length"
    )

    def __init__(self, data: Dataset, settings: BenchSettings):
        from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat

        self.data, self.settings = data, settings
        hp = settings.hparams
        items, d = data.items, hp.embedding_dim
        self.columns = [
            SparseFeat("item_id", items.n_items, embedding_dim=d),
            SparseFeat("likes_level", 11, embedding_dim=d),
            SparseFeat("views_level", 11, embedding_dim=d),
            VarLenSparseFeat(
                SparseFeat("item_tags", items.n_tags, embedding_dim=d), maxlen=5, combiner="mean"
            ),
            DenseFeat("item_emb", items.emb_dim),
            VarLenSparseFeat(
                SparseFeat("hist_item_id", items.n_items, embedding_dim=d, embedding_name="item_id"),
                maxlen=data.max_len,
                length_name="seq_length",
            ),
        ]
        self.train_x = self._features(data["train"])
        self.train_y = data["train"].label.astype(np.float32)
        self.valid_x = self._features(data["valid"])
        self.model = None

    def _features(self, split: SplitArrays) -> dict[str, np.ndarray]:
        """The input dict a deepctr-torch user would build: natural dtypes, one array per feature."""
        items = self.data.items
        hist, length = _right_packed(split.hist)
        return {
            "item_id": split.item_id,
            "likes_level": split.likes,
            "views_level": split.views,
            "item_tags": items.tags[split.item_id],
            "item_emb": items.emb[split.item_id],
            "hist_item_id": hist,
            "seq_length": length,
        }

    def _matrix(self, x: dict[str, np.ndarray]) -> np.ndarray:
        # BaseModel.fit: a list in feature_index order, 1-D arrays made 2-D, concatenated on the
        # last axis (mixed int/float inputs concatenate to float64, as they do for its users).
        cols = [x[name] for name in self.model.feature_index]
        return np.concatenate([c if c.ndim == 2 else c[:, None] for c in cols], axis=-1)

    def reset(self, seed: int) -> None:
        from deepctr_torch.models import DIN

        hp = self.settings.hparams
        torch.manual_seed(seed)
        self.model = DIN(
            self.columns,
            ["item_id"],
            dnn_use_bn=hp.batch_norm,
            dnn_hidden_units=tuple(hp.dnn_hidden),
            dnn_activation="relu",
            att_hidden_size=tuple(hp.attention_hidden),
            att_activation="relu",  # the baseline's attention MLP is ReLU (DeepCTR's default is Dice)
            att_weight_normalization=False,  # no softmax, as in the baseline
            l2_reg_embedding=hp.embedding_reg,
            dnn_dropout=hp.net_dropout,
            seed=seed,
            device="cpu",
        )
        self.model.compile(torch.optim.Adam(self.model.parameters(), lr=hp.lr), "binary_crossentropy")
        self._train_tensor = None

    def n_params(self) -> tuple[int, int]:
        n = sum(p.numel() for p in self.model.parameters())
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad), n

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader, TensorDataset

        if self._train_tensor is None:
            self._train_tensor = TensorDataset(
                torch.from_numpy(self._matrix(self.train_x)), torch.from_numpy(self.train_y)
            )
        return iter(DataLoader(self._train_tensor, shuffle=True, batch_size=self.settings.hparams.batch_size))

    def batch_rows(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return int(batch[0].shape[0])

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        # BaseModel.fit's inner loop (verbose=0: no per-batch metrics).
        model = self.model
        model.train()
        x, y = batch[0].float(), batch[1].float()
        y_pred = model(x).squeeze(-1)
        loss = model.loss_func(y_pred, y, reduction="sum")
        total = loss + model.get_regularization_loss() + model.aux_loss
        model.optim.zero_grad()
        total.backward()
        model.optim.step()
        loss.item()
        total.item()

    def fit(self, epochs: int) -> None:
        best_auc, best_state = -1.0, None
        valid = self.data["valid"]
        for _ in range(epochs):
            self.model.fit(
                dict(self.train_x),
                self.train_y,
                batch_size=self.settings.hparams.batch_size,
                epochs=1,
                verbose=0,
            )
            a = auc(valid.label, self.predict_valid(self.settings.eval_batch_size))
            if a > best_auc:
                best_auc, best_state = a, copy.deepcopy(self.model.state_dict())
        if best_state is not None:
            self.model.load_state_dict(best_state)

    def predict_valid(self, batch_size: int) -> np.ndarray:
        return self.model.predict(dict(self.valid_x), batch_size=batch_size).reshape(-1)

    def score_request(self, req: Request) -> np.ndarray:
        # Served generously: one float32 matrix straight into forward (no DataLoader, as `predict`
        # would use); building it from the request's arrays is counted.
        items, n = self.data.items, req.targets.shape[0]
        hist, length = _right_packed(req.hist[None, :])
        x = {
            "item_id": req.targets,
            "likes_level": req.likes,
            "views_level": req.views,
            "item_tags": items.tags[req.targets],
            "item_emb": items.emb[req.targets],
            "hist_item_id": np.broadcast_to(hist, (n, hist.shape[1])),
            "seq_length": np.broadcast_to(length, (n,)),
        }
        cols = [x[name] for name in self.model.feature_index]
        mat = np.concatenate([c if c.ndim == 2 else c[:, None] for c in cols], axis=-1, dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            return self.model(torch.from_numpy(mat)).reshape(-1).numpy()

    def save(self, out: Path) -> Path:
        # deepctr-torch's documented way: torch.save of the model's state_dict (the item table it
        # reads tags and embeddings from stays outside, as an input file)
        torch.save(self.model.state_dict(), out)
        return out
