"""The training loop: Adam, early stopping on valid AUC, reduce-LR-on-plateau, best checkpoint kept.

The model only returns logits; the loss (BCE, optional in-batch pairwise term, embedding L2) is
added here.
"""

from __future__ import annotations

import copy
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mmctr.config import RunConfig, TrainConfig
from mmctr.data.batches import Batch, iter_batches, n_batches
from mmctr.data.reader import Dataset, SplitArrays, data_fingerprint, true_click_probability
from mmctr.errors import warn
from mmctr.outputs import RUN_DIR, check_out
from mmctr.training.metrics import auc, logloss
from mmctr.training.run_dir import build_model, save_run

# Fewer optimizer steps than this per epoch and a model learns next to nothing (batch too large).
MIN_STEPS_PER_EPOCH = 20


def suggested_batch_size(train_rows: int) -> int:
    """The largest power of two that still gives MIN_STEPS_PER_EPOCH steps an epoch (at least 32)."""
    b = 32
    while train_rows // (2 * b) >= MIN_STEPS_PER_EPOCH:
        b *= 2
    return b


def bf16_is_fast(n: int = 256) -> bool:
    """Whether bf16 matmul here is at least as fast as fp32. On AMX it is ~8x faster; on a CPU
    without AVX-512 (e.g. an AMD EPYC Zen 3) torch falls back to a scalar path at ~1 GFLOP/s, 100x
    slower than fp32, and bf16 autocast would make training crawl."""
    import timeit

    a = torch.randn(n, n)
    b = a.to(torch.bfloat16)
    a @ a, b @ b  # warm up
    fp32 = min(timeit.repeat(lambda: a @ a, number=3, repeat=3))
    bf16 = min(timeit.repeat(lambda: b @ b, number=3, repeat=3))
    return bf16 <= fp32


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


def prepare_model(model: nn.Module, train_split: SplitArrays) -> nn.Module:
    """What a model takes from the train split before its first step: the counting baselines'
    counts (`fit_counts`). Every path that trains a model calls this after building it."""
    if hasattr(model, "fit_counts"):
        model.fit_counts(train_split)
    return model


@torch.inference_mode()
def predict_split(
    model: nn.Module, split: SplitArrays, batch_size: int = 16384, bf16: bool = False
) -> np.ndarray:
    """Click probabilities for every row of `split`, in row order."""
    model.eval()
    out = np.empty(len(split), dtype=np.float32)
    start = 0
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for batch in iter_batches(split, batch_size):
            p = torch.sigmoid(model(batch).float())
            out[start : start + len(batch)] = p.numpy()
            start += len(batch)
    return out


def loss_fn(model: nn.Module, logits: torch.Tensor, batch: Batch, tc: TrainConfig) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(logits, batch.label)
    if tc.pairwise_weight > 0:
        pos, neg = logits[batch.label > 0.5], logits[batch.label <= 0.5]
        if len(pos) and len(neg):
            # each positive against a random in-batch negative (BPR-style)
            j = torch.randint(len(neg), (len(pos),))
            loss = loss + tc.pairwise_weight * F.softplus(neg[j] - pos).mean()
    if tc.embedding_reg > 0:
        loss = loss + tc.embedding_reg / 2 * sum(t.weight.pow(2).sum() for t in model.embedding_tables())
    return loss


@dataclass
class TrainResult:
    model: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


# extra_loss(model, logits, batch) -> a scalar added to the loss (distillation's teacher term)
ExtraLoss = Callable[[nn.Module, torch.Tensor, Batch], torch.Tensor]


def train(
    cfg: RunConfig,
    data: Dataset,
    progress: bool = True,
    log=print,
    model: nn.Module | None = None,
    extra_loss: ExtraLoss | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
) -> TrainResult:
    """Train `cfg.model` on data['train'], select on data['valid'], return the best model.

    `model`: start from this one (fine-tuning a pruned or quantised copy) instead of a fresh one;
    `extra_loss` is added to the loss of every step; `after_step(model)` runs after every optimizer
    step (e.g. to re-apply a pruning mask)."""
    tc = cfg.train
    seed_everything(tc.seed)
    set_threads(tc.threads)
    train_split, valid = data["train"], data["valid"]
    if model is None:
        model = prepare_model(build_model(cfg, data.items), train_split)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model {cfg.model}: {n_params:,} parameters; train {len(train_split):,} rows, valid {len(valid):,} rows"
    )
    steps_per_epoch = n_batches(len(train_split), tc.batch_size)
    if steps_per_epoch < MIN_STEPS_PER_EPOCH:
        warn(
            f"an epoch is only {steps_per_epoch} optimizer step(s) ({len(train_split):,} train rows at batch "
            f"{tc.batch_size:,}); the model will barely learn. Use a smaller --batch-size, e.g. "
            f"{suggested_batch_size(len(train_split))}"
        )
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.net_reg)
    rng = np.random.default_rng(tc.seed)

    best_auc, best_state, best_epoch, bad_epochs, lr_bad = -1.0, None, 0, 0, 0
    history: list[dict[str, float]] = []
    steps, train_seconds, samples = 0, 0.0, 0
    for epoch in range(1, tc.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total = n_batches(len(train_split), tc.batch_size)
        bar = tqdm(
            total=total,
            desc=f"epoch {epoch}",
            disable=not progress,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )
        running, epoch_samples = 0.0, 0
        for batch in iter_batches(train_split, tc.batch_size, shuffle=True, rng=rng):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=tc.bf16):
                logits = model(batch).float()
            loss = loss_fn(model, logits, batch, tc)
            if extra_loss is not None:
                loss = loss + extra_loss(model, logits, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            steps += 1
            epoch_samples += len(batch)
            running = 0.9 * running + 0.1 * loss.item() if running else loss.item()
            bar.set_postfix(loss=f"{running:.4f}")
            bar.update()
            if tc.max_steps and steps >= tc.max_steps:
                break
        bar.close()
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        samples += epoch_samples
        p = predict_split(model, valid, tc.eval_batch_size, tc.bf16)
        v_auc, v_ll = auc(valid.label, p), logloss(valid.label, p)
        lr = opt.param_groups[0]["lr"]
        history.append(
            {
                "epoch": epoch,
                "loss": running,
                "valid_auc": v_auc,
                "valid_logloss": v_ll,
                "lr": lr,
                "seconds": seconds,
            }
        )
        improved = v_auc > best_auc
        log(
            f"epoch {epoch:3d}  loss {running:.4f}  valid AUC {v_auc:.4f}  logloss {v_ll:.4f}  lr {lr:.1e}  "
            f"{epoch_samples / seconds:,.0f} samples/s{'  *best' if improved else ''}"
        )
        if improved:
            best_auc, best_epoch, bad_epochs, lr_bad = v_auc, epoch, 0, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            lr_bad += 1
            if lr_bad >= tc.lr_patience and lr * tc.lr_decay >= tc.min_lr:
                for g in opt.param_groups:
                    g["lr"] = lr * tc.lr_decay
                lr_bad = 0
            if bad_epochs >= tc.patience:
                log(f"early stop: no better valid AUC for {tc.patience} epochs; best was epoch {best_epoch}")
                break
        if tc.max_steps and steps >= tc.max_steps:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    p = predict_split(model, valid, tc.eval_batch_size, tc.bf16)
    metrics: dict[str, Any] = {
        "model": cfg.model,
        "valid_auc": auc(valid.label, p),
        "valid_logloss": logloss(valid.label, p),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "params": n_params,
        "train_samples_per_s": samples / train_seconds if train_seconds else 0.0,
        "train_seconds": train_seconds,
    }
    metrics.update(truth_metrics(data, p))
    return TrainResult(model=model, metrics=metrics, history=history)


def truth_metrics(data: Dataset, valid_pred: np.ndarray) -> dict[str, float]:
    """oracle_valid_auc (AUC of the true click probability) and cold-target AUC, when the data
    carries the generator's truth/. Training never reads truth/; this is for reporting only."""
    import json

    out: dict[str, float] = {}
    path = data.layout.click_probability
    if not path.exists():
        return out
    valid = data["valid"]
    oracle = true_click_probability(path, "valid")
    out["oracle_valid_auc"] = auc(valid.label, oracle)
    world = data.layout.truth_dir / "world.json"
    if world.exists():
        cold = np.asarray(json.loads(world.read_text()).get("cold_item_ids", []), dtype=np.int64)
        is_cold = np.isin(valid.item_id, cold)
        if is_cold.any() and 0 < valid.label[is_cold].mean() < 1:
            out["cold_valid_auc"] = auc(valid.label[is_cold], valid_pred[is_cold])
            out["oracle_cold_valid_auc"] = auc(valid.label[is_cold], oracle[is_cold])
            out["cold_valid_rows"] = int(is_cold.sum())
    return out


def train_and_save(
    cfg: RunConfig, data: Dataset, out: Path, progress: bool = True, log=print, overwrite: bool = False
) -> TrainResult:
    """Train and write the run directory `out` (refused up front, before any training, when
    `out` may not be written: see `mmctr.outputs`)."""
    check_out(Path(out), RUN_DIR, overwrite)
    result = train(cfg, data, progress=progress, log=log)
    facts = {
        "data_root": str(data.layout.root),
        "item_info": data.items.source,
        "n_items": data.items.n_items,
        "n_tags": data.items.n_tags,
        "max_len": data.max_len,
        "data_fingerprint": data_fingerprint(data.layout.root),
    }
    metrics = dict(result.metrics, history=result.history)
    save_run(out, cfg, result.model, data.items, metrics, facts, overwrite=overwrite)
    return result
