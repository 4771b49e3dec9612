"""FuxiCTR's DIN pipeline, as the MMCTR organisers ran their baseline, as a benchmark peer.

Importable only where `fuxictr` (and `polars<2`, `pandas`) are installed; the harness runs it in that
interpreter (`--fuxictr-python`), so mmctr's own environment never needs them.

What is reproduced, and from where:
- the feature map: built by FuxiCTR's own `FeatureProcessor` / `build_dataset` from the organisers'
  feature spec (user_id and item_seq meta; likes_level, views_level categorical, vocab 11; item_id
  categorical and item_tags sequence (max 5, masked mean) with source=item; item_emb_d128 an
  `embedding` feature, dim 128, projected by FuxiCTR's learned Linear), `rebuild_dataset: false`
  as the organisers ran it (their data already holds integer ids);
- the model: the organisers' DIN written against FuxiCTR's `BaseModel`, `FeatureEmbedding`,
  `DIN_Attention` and `MLP_Block` (not shipped on PyPI, so re-stated here): every history item and
  the target are id ⊕ tags ⊕ projected embedding (256 wide), attention over the full padded history,
  DNN over likes ⊕ views ⊕ target item features ⊕ target item ⊕ pooled history;
- the input pipeline: the organisers' loader — one 2-D array of rows collated by torch's
  `default_collate`, then item features looked up per batch from an item_info DataFrame with
  `.iloc` and `np.stack` — but run in-process (`num_workers=0`; the organisers used 3 workers, which a
  2-core machine cannot give without taking cores from the model);
- training: FuxiCTR's `BaseModel.fit` (eval per epoch, best checkpoint restored, LR decay on
  plateau) with the organisers' `train_step` (gradient clipping at norm 10).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fuxictr.features import FeatureMap
from fuxictr.preprocess import FeatureProcessor, build_dataset
from fuxictr.pytorch.layers import DIN_Attention, FeatureEmbedding, MLP_Block
from fuxictr.pytorch.models import BaseModel
from fuxictr.utils import not_in_whitelist
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data.dataloader import default_collate

from mmctr.bench.spec import BenchSettings
from mmctr.data.reader import Dataset, ItemTable, SplitArrays
from mmctr.serving import Request

DATASET_ID = "MicroLens_1M_x1"


def feature_cols(items: ItemTable) -> list[dict[str, Any]]:
    """The organisers' dataset_config feature_cols, with vocab sizes of the data at hand."""
    return [
        {"name": "user_id", "active": True, "dtype": "int", "type": "meta"},
        {"name": "item_seq", "active": True, "dtype": "int", "type": "meta"},
        {"name": "likes_level", "active": True, "dtype": "int", "type": "categorical", "vocab_size": 11},
        {"name": "views_level", "active": True, "dtype": "int", "type": "categorical", "vocab_size": 11},
        {
            "name": "item_id",
            "active": True,
            "dtype": "int",
            "type": "categorical",
            "vocab_size": items.n_items,
            "source": "item",
        },
        {
            "name": "item_tags",
            "active": True,
            "dtype": "int",
            "type": "sequence",
            "max_len": 5,
            "vocab_size": items.n_tags,
            "source": "item",
        },
        {
            "name": "item_emb_d128",
            "active": True,
            "dtype": "float",
            "type": "embedding",
            "source": "item",
            "embedding_dim": 128,
            # FuxiCTR 2.3.10's column index needs it; the organisers' (older) FuxiCTR inferred it.
            "pretrain_dim": items.emb_dim,
        },
    ]


def build_feature_map(items: ItemTable, work_dir: Path, embedding_dim: int) -> FeatureMap:
    processor = FeatureProcessor(
        feature_cols=feature_cols(items),
        label_col={"name": "label", "dtype": "float"},
        dataset_id=DATASET_ID,
        data_root=str(work_dir),
    )
    build_dataset(processor, rebuild_dataset=False)
    feature_map = FeatureMap(DATASET_ID, processor.data_dir)
    feature_map.load(os.path.join(processor.data_dir, "feature_map.json"), {"embedding_dim": embedding_dim})
    return feature_map


# ----------------------------------------------------------------------------------------------
# the organisers' DIN, on FuxiCTR's blocks


class DIN(BaseModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        model_id: str = "DIN",
        gpu: int = -1,
        dnn_hidden_units: list[int] | None = None,
        dnn_activations: str = "ReLU",
        attention_hidden_units: list[int] | None = None,
        attention_hidden_activations: str = "ReLU",
        attention_output_activation: str | None = None,
        attention_dropout: float = 0.0,
        learning_rate: float = 1e-3,
        embedding_dim: int = 64,
        net_dropout: float = 0.0,
        batch_norm: bool = False,
        din_use_softmax: bool = False,
        embedding_regularizer: float | None = None,
        net_regularizer: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            feature_map,
            model_id=model_id,
            gpu=gpu,
            embedding_regularizer=embedding_regularizer,
            net_regularizer=net_regularizer,
            **kwargs,
        )
        # an item is every source=item feature side by side: id 64 ⊕ tags 64 ⊕ projected emb 128
        self.item_info_dim = sum(
            spec.get("embedding_dim", embedding_dim)
            for spec in feature_map.features.values()
            if spec.get("source") == "item"
        )
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.attention_layers = DIN_Attention(
            self.item_info_dim,
            attention_units=attention_hidden_units or [512, 256],
            hidden_activations=attention_hidden_activations,
            output_activation=attention_output_activation,
            dropout_rate=attention_dropout,
            use_softmax=din_use_softmax,
        )
        self.dnn = MLP_Block(
            input_dim=feature_map.sum_emb_out_dim() + self.item_info_dim,
            output_dim=1,
            hidden_units=dnn_hidden_units or [1024, 512, 256],
            hidden_activations=dnn_activations,
            output_activation=self.output_activation,
            dropout_rates=net_dropout,
            batch_norm=batch_norm,
        )
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs: tuple) -> dict[str, torch.Tensor]:
        batch_dict, item_dict, mask = self.get_inputs(inputs)
        parts = []
        if batch_dict:
            parts.append(self.embedding_layer(batch_dict, flatten_emb=True))  # (B, 128) likes ⊕ views
        items = self.embedding_layer(item_dict, flatten_emb=True)  # (B·(L+1), 256)
        items = items.view(mask.shape[0], -1, self.item_info_dim)  # (B, L+1, 256), target last
        target = items[:, -1, :]
        parts += [target, self.attention_layers(target, items[:, :-1, :], mask)]
        return {"y_pred": self.dnn(torch.cat(parts, dim=-1))}

    def get_inputs(self, inputs: tuple, feature_source: Any = None) -> tuple:
        batch_dict, item_dict, mask = inputs
        x = {}
        for name, value in batch_dict.items():
            if name in self.feature_map.labels:
                continue
            spec = self.feature_map.features[name]
            if spec["type"] == "meta":
                continue
            if feature_source and not_in_whitelist(spec["source"], feature_source):
                continue
            x[name] = value.to(self.device)
        items = {k: v.to(self.device) for k, v in item_dict.items()}
        return x, items, mask.to(self.device)

    def get_labels(self, inputs: tuple) -> torch.Tensor:
        return inputs[0][self.feature_map.labels[0]].to(self.device).float().view(-1, 1)

    def get_group_id(self, inputs: tuple) -> torch.Tensor:
        return inputs[0][self.feature_map.group_id]

    def train_step(self, batch_data: tuple) -> torch.Tensor:
        return_dict = self.forward(batch_data)
        loss = self.compute_loss(return_dict, self.get_labels(batch_data))
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters(), self._max_gradient_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss


# ----------------------------------------------------------------------------------------------
# the organisers' loader: rows of one array, default_collate, item features looked up per batch


COLUMNS = ("user_id", "item_seq", "item_id", "likes_level", "views_level", "label")


class RowsDataset(TorchDataset):
    """A split as one 2-D array, one row per sample, as the organisers' ParquetDataset holds it."""

    def __init__(self, split: SplitArrays):
        arrays = [split.user_id, split.hist, split.item_id, split.likes, split.views, split.label]
        self.column_index: dict[str, Any] = {}
        idx = 0
        for name, a in zip(COLUMNS, arrays, strict=True):
            width = a.shape[1] if a.ndim == 2 else 1
            self.column_index[name] = list(range(idx, idx + width)) if a.ndim == 2 else idx
            idx += width
        # all integer-valued (labels are 0/1), so one int64 array, as the organisers' ids were
        self.rows = np.column_stack([a.astype(np.int64) for a in arrays])

    def __getitem__(self, index: int) -> np.ndarray:
        return self.rows[index, :]

    def __len__(self) -> int:
        return self.rows.shape[0]


class BatchCollator:
    def __init__(self, feature_map: FeatureMap, column_index: dict[str, Any], item_info: pd.DataFrame):
        self.feature_map = feature_map
        self.column_index = column_index
        self.item_info = item_info
        self.wanted = set(feature_map.features) | set(feature_map.labels)

    def __call__(self, rows: list[np.ndarray]) -> tuple[dict, dict, torch.Tensor]:
        batch = default_collate(rows)
        batch_dict = {c: batch[:, i] for c, i in self.column_index.items() if c in self.wanted}
        seqs = batch_dict.pop("item_seq")  # (B, L) already the last max_len, left-padded
        mask = (seqs > 0).float()
        targets = batch_dict.pop("item_id").numpy().reshape(-1, 1)
        ids = np.hstack([seqs.numpy(), targets]).flatten()  # (B·(L+1),) history then target
        info = self.item_info.iloc[ids]
        item_dict = {
            c: torch.from_numpy(np.stack(info[c].to_numpy())) for c in info.columns if c in self.wanted
        }
        return batch_dict, item_dict, mask


def item_info_frame(items: ItemTable) -> pd.DataFrame:
    """item_info.parquet as the organisers' collator holds it: a DataFrame of list cells."""
    return pd.DataFrame(
        {
            "item_id": np.arange(items.n_items, dtype=np.int64),
            "item_tags": list(items.tags.astype(np.int64)),
            "item_emb_d128": list(items.emb),
        }
    )


# ----------------------------------------------------------------------------------------------


class FuxiCTRDIN:
    precision = "fp32"
    inputs = (
        "organisers' FuxiCTR feature map: likes_level, views_level (dim 64); every history item and "
        "the target as item_id (64) ⊕ item_tags masked mean (64) ⊕ item_emb_d128 projected 128→128 "
        "(256 wide); history: the last max_len ids, left-padded, attention over all positions with a mask"
    )

    def __init__(self, data: Dataset, settings: BenchSettings):
        self.data, self.settings = data, settings
        work = Path(settings.work_dir or ".") / "fuxictr"
        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        self.feature_map = build_feature_map(data.items, work, settings.hparams.embedding_dim)
        self.item_info = item_info_frame(data.items)
        self.train_rows = RowsDataset(data["train"])
        self.valid_rows = RowsDataset(data["valid"])
        self.model: DIN | None = None

    def _loader(self, rows: RowsDataset, batch_size: int, shuffle: bool) -> DataLoader:
        collate = BatchCollator(self.feature_map, rows.column_index, self.item_info)
        return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, num_workers=0, collate_fn=collate)

    def reset(self, seed: int) -> None:
        from fuxictr.pytorch.torch_utils import seed_everything

        hp = self.settings.hparams
        seed_everything(seed)
        self.model = DIN(
            self.feature_map,
            dnn_hidden_units=list(hp.dnn_hidden),
            attention_hidden_units=list(hp.attention_hidden),
            attention_dropout=hp.attention_dropout,
            learning_rate=hp.lr,
            embedding_dim=hp.embedding_dim,
            net_dropout=hp.net_dropout,
            batch_norm=hp.batch_norm,
            embedding_regularizer=hp.embedding_reg,
            net_regularizer=0,
            # BaseModel's own settings, as the organisers' model_config set them
            optimizer="adam",
            loss="binary_crossentropy",
            metrics=["AUC", "logloss"],
            monitor="AUC",
            monitor_mode="max",
            early_stop_patience=self.settings.epochs + 1,  # fixed budget: never stop early
            model_root=str(self.work / "checkpoints"),
            verbose=0,
        )
        self.model._max_gradient_norm = 10.0  # what fit() sets; train_step clips with it
        os.makedirs(self.model.model_dir, exist_ok=True)

    def n_params(self) -> tuple[int, int]:
        n = sum(p.numel() for p in self.model.parameters())
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad), n

    def train_batches(self) -> Iterator[tuple]:
        self.model.train()
        return iter(self._loader(self.train_rows, self.settings.hparams.batch_size, shuffle=True))

    def batch_rows(self, batch: tuple) -> int:
        return int(batch[2].shape[0])

    def train_step(self, batch: tuple) -> None:
        self.model.train_step(batch).item()

    def fit(self, epochs: int) -> None:
        hp = self.settings.hparams
        self.model.fit(
            self._loader(self.train_rows, hp.batch_size, shuffle=True),
            epochs=epochs,
            validation_data=self._loader(self.valid_rows, self.settings.eval_batch_size, shuffle=False),
            max_gradient_norm=10.0,
        )

    def predict_valid(self, batch_size: int) -> np.ndarray:
        return self.model.predict(self._loader(self.valid_rows, batch_size, shuffle=False)).reshape(-1)

    def score_request(self, req: Request) -> np.ndarray:
        # Served generously: tensors built with numpy indexing (not the collator's pandas lookup),
        # straight into forward; building them from the request's arrays is counted.
        items, n = self.data.items, req.targets.shape[0]
        hist = np.broadcast_to(req.hist.astype(np.int64), (n, req.hist.shape[0]))
        ids = np.hstack([hist, req.targets[:, None]]).reshape(-1)
        batch_dict = {"likes_level": torch.from_numpy(req.likes), "views_level": torch.from_numpy(req.views)}
        item_dict = {
            "item_id": torch.from_numpy(ids),
            "item_tags": torch.from_numpy(items.tags[ids].astype(np.int64)),
            "item_emb_d128": torch.from_numpy(items.emb[ids]),
        }
        mask = torch.from_numpy(hist > 0).float()
        self.model.eval()
        with torch.inference_mode():
            return self.model((batch_dict, item_dict, mask))["y_pred"].reshape(-1).numpy()

    def save(self, out: Path) -> Path:
        # BaseModel.save_weights: the state_dict (item_info.parquet stays outside, as an input file)
        self.model.save_weights(str(out))
        return out
