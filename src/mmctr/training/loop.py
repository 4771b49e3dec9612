"""The training loop: Adam, early stopping on valid AUC, reduce-LR-on-plateau, best checkpoint kept.

The model only returns logits; the loss (BCE, optional in-batch pairwise term, embedding L2) is
added here.
"""

from __future__ import annotations

import functools
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mmctr.config import RunConfig, TrainConfig
from mmctr.data.batches import Batch, iter_batches, n_batches
from mmctr.data.reader import Dataset, SplitArrays, true_click_probability
from mmctr.data.stream import InMemorySplit, StreamedSplit
from mmctr.errors import ConfigError, warn
from mmctr.outputs import RUN_DIR, check_out
from mmctr.training.distributed import (
    World,
    barrier,
    block,
    gather_blocks,
    gather_objects,
    local_batch_size,
    shard_rows,
    sum_over_ranks,
)
from mmctr.training.metrics import auc, logloss
from mmctr.training.run_dir import build_model, data_facts, save_run

# Fewer optimizer steps than this per epoch and a model learns next to nothing (batch too large).
MIN_STEPS_PER_EPOCH = 20


def suggested_batch_size(train_rows: int) -> int:
    """The largest power of two that still gives MIN_STEPS_PER_EPOCH steps an epoch (at least 32)."""
    b = 32
    while train_rows // (2 * b) >= MIN_STEPS_PER_EPOCH:
        b *= 2
    return b


@functools.cache
def bf16_is_fast(n: int = 256, rounds: int = 7) -> bool:
    """Whether bf16 matmul here is at least as fast as fp32. On AMX it is ~8x faster; on a CPU
    without AVX-512 (e.g. an AMD EPYC Zen 3) torch falls back to a scalar path at ~1 GFLOP/s, 100x
    slower than fp32, and bf16 autocast would make training crawl; on a Xeon with AVX-512 BF16 but
    no AMX exposed, bf16 runs at about half fp32's rate. The two dtypes are timed in turn and their
    medians compared, so that a burst of load on the host falls on both (the minimum of three
    2-thread timings each answered "fast" 4-14 times in 100 on that Xeon with one or two cores
    busy). The answer is kept for the process: the demo, the serving copy and the bench's options
    must not disagree."""
    a = torch.randn(n, n)
    b = a.to(torch.bfloat16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the kernels' speed, not how busy the other cores are
    try:
        a @ a, b @ b  # warm up
        fp32, bf16 = [], []
        for _ in range(rounds):
            fp32.append(_seconds(lambda: a @ a))
            bf16.append(_seconds(lambda: b @ b))
            if bf16[-1] > 20 * fp32[-1]:  # torch's scalar path: no need to wait for more rounds of it
                return False
    finally:
        torch.set_num_threads(threads)
    return not slower_in_median(bf16, fp32)


def _seconds(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def slower_in_median(a: list[float], b: list[float]) -> bool:
    """Whether timings `a` are slower than timings `b`, median against median."""
    return float(np.median(a)) > float(np.median(b))


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


# extra_loss(model, logits, batch) -> a scalar added to the loss (distillation's teacher term)
ExtraLoss = Callable[[nn.Module, torch.Tensor, Batch], torch.Tensor]


@dataclass
class TrainResult:
    model: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Checkpointing:
    """Where and how often `train` writes its checkpoint (`mmctr.training.checkpoint`), and the
    loaded checkpoint to continue from, if any."""

    dir: Path
    every_steps: int = 1000  # also at the end of every epoch; 0: epoch ends only
    resume: dict[str, Any] | None = None


@dataclass
class LoopState:
    """Everything about where training stands besides the weights and the optimizer: what a
    checkpoint holds so that a resumed run continues exactly where the killed one was."""

    epoch: int = 1  # the epoch in progress (1-based)
    batch_in_epoch: int = 0  # its batches already done
    steps: int = 0
    train_seconds: float = 0.0
    samples: int = 0  # this rank's rows trained on
    epoch_seconds: float = 0.0  # of the epoch in progress, before the last resume
    epoch_samples: int = 0
    running: float = 0.0
    best_auc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    lr_bad: int = 0
    done: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def _plain(obj: Any) -> Any:
    """numpy arrays in an RNG state as lists: a checkpoint loads with weights_only=True."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj.tolist() if isinstance(obj, np.ndarray) else obj


def _rng_states(model: nn.Module, rng: np.random.Generator, epoch_rng: dict) -> dict[str, Any]:
    return {
        # modules' own random state outside the weights (BankDropout's mask bank), by module name
        "modules": {n: m.train_state() for n, m in model.named_modules() if hasattr(m, "train_state")},
        "python": random.getstate(),
        "numpy_global": _plain(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
        "shuffle": rng.bit_generator.state,
        "shuffle_epoch_start": epoch_rng,
    }


def _checkpoint_payload(model, opt, best_state, state: LoopState, rngs: list, world: World) -> dict:
    return {
        "format": 1,
        "world_size": world.size,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "best_model": best_state,
        "loop": asdict(state),
        "rng": rngs,  # one entry per rank
    }


def _restore(ckpt: dict, model, opt, rng: np.random.Generator, world: World) -> tuple[LoopState, Any, dict]:
    from mmctr.training.checkpoint import CheckpointError

    if ckpt.get("world_size") != world.size:
        raise CheckpointError(
            f"the checkpoint was written by {ckpt.get('world_size')} process(es); resume it with the "
            f"same number (this is {world.size})"
        )
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    state = LoopState(**ckpt["loop"])
    rngs = ckpt["rng"][world.rank]
    for name, m in model.named_modules():
        if name in rngs["modules"]:
            m.load_train_state(rngs["modules"][name])
    random.setstate(rngs["python"])
    g = rngs["numpy_global"]
    np.random.set_state({**g, "state": {**g["state"], "key": np.asarray(g["state"]["key"], np.uint32)}})
    torch.set_rng_state(rngs["torch"])
    # mid-epoch: redraw the epoch's shuffle from its start state, then skip the batches done
    rng.bit_generator.state = rngs["shuffle_epoch_start"] if state.batch_in_epoch else rngs["shuffle"]
    return state, ckpt["best_model"], rngs["shuffle_epoch_start"]


def predict_rows(model: nn.Module, split: SplitArrays, tc: TrainConfig, world: World) -> np.ndarray:
    """Click probabilities of every row of `split`: each rank scores its block, every rank gets all."""
    part = split.take(np.arange(len(split))[block(len(split), world)]) if world.distributed else split
    return gather_blocks(predict_split(model, part, tc.eval_batch_size, tc.bf16), len(split), world)


def train(
    cfg: RunConfig,
    data: Dataset,
    progress: bool = True,
    log=print,
    model: nn.Module | None = None,
    extra_loss: ExtraLoss | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    checkpointing: Checkpointing | None = None,
    train_rows: InMemorySplit | StreamedSplit | None = None,
    world: World | None = None,
) -> TrainResult:
    """Train `cfg.model` on data['train'], select on data['valid'], return the best model.

    `model`: start from this one (fine-tuning a pruned or quantised copy) instead of a fresh one;
    `extra_loss` is added to the loss of every step; `after_step(model)` runs after every optimizer
    step (e.g. to re-apply a pruning mask). `checkpointing` writes checkpoints (and resumes from
    one); `train_rows` replaces data['train'] (a streamed split); `world` is this process's place in
    a torchrun job (`mmctr.training.distributed`), one process when None."""
    tc = cfg.train
    world = world or World()
    seed_everything(tc.seed)
    set_threads(tc.threads)
    valid = data["valid"]
    if model is None:
        if train_rows is not None and "train" not in data.splits:
            model = build_model(cfg, data.items)
            if hasattr(model, "fit_counts"):
                raise ConfigError(
                    f"model {cfg.model} counts over the whole train split before training; it cannot "
                    "be trained from a streamed split. Drop --stream"
                )
        else:
            model = prepare_model(build_model(cfg, data.items), data["train"])  # counts: all rows
    if train_rows is None:
        shard = shard_rows(len(data["train"]), world)
        train_rows = InMemorySplit(data["train"] if shard is None else data["train"].take(shard))
    model = model.to(world.device)
    if world.distributed:
        torch.manual_seed(tc.seed + 1_000_003 * world.rank)  # the same weights, but each rank its own dropout
    local_batch = local_batch_size(tc.batch_size, world)
    n_params = sum(p.numel() for p in model.parameters())
    if world.main:
        log(
            f"model {cfg.model}: {n_params:,} parameters; train {len(train_rows) * world.size:,} rows"
            f"{f' over {world.size} processes' if world.distributed else ''}, valid {len(valid):,} rows"
        )
    steps_per_epoch = n_batches(len(train_rows), local_batch)
    if steps_per_epoch < MIN_STEPS_PER_EPOCH and world.main:
        n_rows = len(train_rows) * world.size
        warn(
            f"an epoch is only {steps_per_epoch} optimizer step(s) ({n_rows:,} train rows at batch "
            f"{tc.batch_size:,}); the model will barely learn. Use a smaller --batch-size, e.g. "
            f"{suggested_batch_size(n_rows)}"
        )
    trainable = any(p.requires_grad for p in model.parameters())
    net = model
    if world.distributed and trainable:
        from torch.nn.parallel import DistributedDataParallel

        # some models leave parameters out of a step (e.g. no history in a batch)
        net = DistributedDataParallel(model, find_unused_parameters=True)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.net_reg)
    # one process keeps the shuffle it always had; ranks of a job each draw their own
    rng = np.random.default_rng(tc.seed if not world.distributed else [tc.seed, world.rank])

    state, best_state = LoopState(), None
    epoch_rng = rng.bit_generator.state
    if checkpointing is not None and checkpointing.resume is not None:
        state, best_state, epoch_rng = _restore(checkpointing.resume, model, opt, rng, world)
        if world.main:
            log(f"resumed at epoch {state.epoch}, batch {state.batch_in_epoch} of {steps_per_epoch}")

    def save_checkpoint() -> None:
        rngs = gather_objects(_rng_states(model, rng, epoch_rng), world)
        if world.main:
            from mmctr.training import checkpoint

            checkpoint.save(
                checkpointing.dir, _checkpoint_payload(model, opt, best_state, state, rngs, world)
            )
        barrier(world)

    autocast = torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=tc.bf16)
    while not state.done and state.epoch <= tc.epochs:
        epoch = state.epoch
        model.train()
        t0 = time.perf_counter()
        if state.batch_in_epoch == 0:
            epoch_rng = rng.bit_generator.state
        bar = tqdm(
            total=steps_per_epoch,
            initial=state.batch_in_epoch,
            desc=f"epoch {epoch}",
            disable=not progress or not world.main,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )
        for batch in train_rows.batches(local_batch, rng, skip=state.batch_in_epoch):
            batch = batch.to(world.device) if world.device.type != "cpu" else batch
            with autocast:
                logits = net(batch).float()
            loss = loss_fn(model, logits, batch, tc)
            if extra_loss is not None:
                loss = loss + extra_loss(model, logits, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            state.steps += 1
            state.batch_in_epoch += 1
            state.epoch_samples += len(batch)
            state.running = 0.9 * state.running + 0.1 * loss.item() if state.running else loss.item()
            bar.set_postfix(loss=f"{state.running:.4f}")
            bar.update()
            if tc.max_steps and state.steps >= tc.max_steps:
                break
            if checkpointing and checkpointing.every_steps and state.steps % checkpointing.every_steps == 0:
                state.epoch_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                save_checkpoint()
        bar.close()
        seconds = state.epoch_seconds + time.perf_counter() - t0
        state.train_seconds += seconds
        epoch_samples = state.epoch_samples
        state.samples += epoch_samples
        p = predict_rows(model, valid, tc, world)
        v_auc, v_ll = auc(valid.label, p), logloss(valid.label, p)
        lr = opt.param_groups[0]["lr"]
        rate = sum_over_ranks(epoch_samples, world) / seconds if seconds else 0.0
        state.history.append(
            {
                "epoch": epoch,
                "loss": state.running,
                "valid_auc": v_auc,
                "valid_logloss": v_ll,
                "lr": lr,
                "seconds": seconds,
            }
        )
        improved = v_auc > state.best_auc
        if world.main:
            log(
                f"epoch {epoch:3d}  loss {state.running:.4f}  valid AUC {v_auc:.4f}  logloss {v_ll:.4f}  "
                f"lr {lr:.1e}  {rate:,.0f} samples/s{'  *best' if improved else ''}"
            )
        if improved:
            state.best_auc, state.best_epoch, state.bad_epochs, state.lr_bad = v_auc, epoch, 0, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state.bad_epochs += 1
            state.lr_bad += 1
            if state.lr_bad >= tc.lr_patience and lr * tc.lr_decay >= tc.min_lr:
                for g in opt.param_groups:
                    g["lr"] = lr * tc.lr_decay
                state.lr_bad = 0
            if state.bad_epochs >= tc.patience:
                if world.main:
                    log(
                        f"early stop: no better valid AUC for {tc.patience} epochs; best was epoch "
                        f"{state.best_epoch}"
                    )
                state.done = True
        if tc.max_steps and state.steps >= tc.max_steps:
            state.done = True
        state.epoch += 1
        state.batch_in_epoch, state.epoch_seconds, state.epoch_samples = 0, 0.0, 0
        if checkpointing is not None:
            save_checkpoint()
    if best_state is not None:
        model.load_state_dict(best_state)
    p = predict_rows(model, valid, tc, world)
    samples = sum_over_ranks(state.samples, world)
    metrics: dict[str, Any] = {
        "model": cfg.model,
        "valid_auc": auc(valid.label, p),
        "valid_logloss": logloss(valid.label, p),
        "best_epoch": state.best_epoch,
        "epochs_run": len(state.history),
        "params": n_params,
        "train_samples_per_s": samples / state.train_seconds if state.train_seconds else 0.0,
        "train_seconds": state.train_seconds,
    }
    if world.distributed:
        metrics["processes"] = world.size
    metrics.update(truth_metrics(data, p))
    return TrainResult(model=model, metrics=metrics, history=state.history)


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
    cfg: RunConfig,
    data: Dataset,
    out: Path,
    progress: bool = True,
    log=print,
    overwrite: bool = False,
    checkpointing: Checkpointing | None = None,
    train_rows: InMemorySplit | StreamedSplit | None = None,
    world: World | None = None,
) -> TrainResult:
    """Train and write the run directory `out` (refused up front, before any training, when
    `out` may not be written: see `mmctr.outputs`). In a torchrun job every rank trains and rank 0
    alone writes; the checkpoint directory is deleted once the run directory is in place."""
    world = world or World()
    check_out(Path(out), RUN_DIR, overwrite)
    result = train(
        cfg, data, progress=progress, log=log, checkpointing=checkpointing, train_rows=train_rows, world=world
    )
    if world.main:
        facts = data_facts(data)
        if world.distributed:
            facts["processes"] = world.size
        metrics = dict(result.metrics, history=result.history)
        save_run(out, cfg, result.model, data.items, metrics, facts, overwrite=overwrite)
        if checkpointing is not None:
            from mmctr.training import checkpoint

            checkpoint.finish(checkpointing.dir)
    barrier(world)
    return result
