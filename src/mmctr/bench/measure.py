"""Measuring one system, inside its own subprocess: training steps, FLOPs, valid AUC, batch scoring,
single-request latency, checkpoint size, peak RSS.

A system is anything with the small `System` interface below; mmctr's models and each peer get an
adapter that drives the system through its own input pipeline, so each is timed doing what its
users would run. Every system sees the same train/valid arrays (read once by mmctr's reader) and
the same requests.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mmctr.bench.spec import BenchSettings
from mmctr.data.reader import Dataset
from mmctr.serving import Request, make_requests
from mmctr.training.metrics import auc, logloss


class System(Protocol):
    precision: str  # "fp32" or "bf16": what the matmuls run in
    inputs: str  # exactly which features the system sees (reported)

    def reset(self, seed: int) -> None:
        """A fresh model and optimiser, seeded."""

    def n_params(self) -> tuple[int, int]:
        """(trainable parameters, all parameters incl. frozen)."""

    def train_batches(self) -> Iterator[Any]:
        """One shuffled epoch of training batches, built by the system's own input pipeline."""

    def batch_rows(self, batch: Any) -> int: ...

    def train_step(self, batch: Any) -> None:
        """Forward, loss, backward, optimiser step: what the system's own training loop does per batch."""

    def fit(self, epochs: int) -> None:
        """Train from the current fresh model for `epochs` epochs with the system's own loop, keeping
        the epoch with the best valid AUC."""

    def predict_valid(self, batch_size: int) -> np.ndarray:
        """Click probabilities for every valid row, in row order, with the system's own batch API."""

    def score_request(self, req: Request) -> np.ndarray:
        """Probabilities for the N candidates of one request, from numpy inputs to numpy outputs."""

    def save(self, out: Path) -> Path:
        """Write the checkpoint the system's users would ship (a file or a directory) at `out`;
        return the file in it that holds the learned weights."""


# ----------------------------------------------------------------------------------------------
# the parts of a measurement


def _endless(system: System) -> Iterator[Any]:
    while True:
        yield from system.train_batches()


def time_train_steps(system: System, warmup: int, timed: int) -> dict[str, Any]:
    """Per-step wall time of the system's training step, split into getting the batch from its
    pipeline (`data`) and the step itself (`compute`); medians over `timed` steps after `warmup`."""
    it = _endless(system)
    steps: list[tuple[int, float, float]] = []
    for i in range(warmup + timed):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        system.train_step(batch)
        t2 = time.perf_counter()
        if i >= warmup:
            steps.append((system.batch_rows(batch), t1 - t0, t2 - t1))
    step_s = [d + c for _, d, c in steps]
    return {
        "train_samples_per_s": statistics.median(
            rows / s for (rows, _, _), s in zip(steps, step_s, strict=True)
        ),
        "train_step_ms": 1e3 * statistics.median(step_s),
        "train_data_ms": 1e3 * statistics.median(d for _, d, _ in steps),
        "train_compute_ms": 1e3 * statistics.median(c for _, _, c in steps),
        "train_rows_per_step": statistics.median(rows for rows, _, _ in steps),
        "train_step_ms_all": [1e3 * s for s in step_s],
        "train_steps_timed": len(steps),
    }


def count_train_flops(system: System) -> tuple[float, int]:
    """FLOPs of one training step (forward + backward, as executed: padding included), counted by
    torch's FlopCounterMode on a real batch, and that batch's rows."""
    from mmctr.bench.machine import flop_counter

    batch = next(iter(system.train_batches()))
    with flop_counter() as counter:
        system.train_step(batch)
    return float(counter.get_total_flops()), system.batch_rows(batch)


def time_requests(system: System, requests: list[Request], warmup: int) -> dict[str, Any]:
    """Single-threaded latency of one request (numpy in, numpy out), p50/p99 after `warmup`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for i, req in enumerate(requests):
            t0 = time.perf_counter()
            p = system.score_request(req)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
            if i == 0 and p.shape[0] != req.targets.shape[0]:
                raise RuntimeError(f"a request of {req.targets.shape[0]} candidates got {p.shape[0]} scores")
    finally:
        torch.set_num_threads(before)
    ms = 1e3 * np.asarray(times)
    return {
        "infer_p50_ms": float(np.percentile(ms, 50)),
        "infer_p99_ms": float(np.percentile(ms, 99)),
        "infer_mean_ms": float(ms.mean()),
        "infer_threads": 1,
        "infer_requests": len(times),
    }


def time_batch_scoring(system: System, n_rows: int, batch_size: int) -> tuple[np.ndarray, float]:
    """Scores of the whole valid split and rows/s of the second of two passes (the first warms)."""
    system.predict_valid(batch_size)
    t0 = time.perf_counter()
    p = system.predict_valid(batch_size)
    return p, n_rows / (time.perf_counter() - t0)


def checkpoint_mb(system: System) -> tuple[float, float]:
    """Sizes in MiB of everything the system saves, and of its learned-weights file alone."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ckpt"
        weights = system.save(out)
        files = [out] if out.is_file() else [f for f in out.rglob("*") if f.is_file()]
        return sum(f.stat().st_size for f in files) / 2**20, weights.stat().st_size / 2**20


def auc_standard_error(a: float, labels: np.ndarray) -> float:
    """Hanley & McNeil (1982) standard error of an AUC on this many positives and negatives: the
    sampling noise of the valid set alone, to read AUC differences against."""
    n1 = float((labels > 0.5).sum())
    n2 = float(labels.size - n1)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return float(np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)))


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS)
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


# ----------------------------------------------------------------------------------------------


def measure(system: System, data: Dataset, settings: BenchSettings, log=print) -> dict[str, Any]:
    """Everything one record holds, for one system, in this process."""
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    rec: dict[str, Any] = {"precision": system.precision, "inputs": system.inputs}

    log("  timing training steps")
    system.reset(settings.seed)
    rec["params"], rec["params_total"] = system.n_params()
    rec.update(time_train_steps(system, settings.warmup_steps, settings.timed_steps))
    rec["train_threads"] = torch.get_num_threads()

    flops, rows = count_train_flops(system)
    rec["train_gflop_per_step"] = flops / 1e9
    rec["train_mflop_per_sample"] = flops / max(rows, 1) / 1e6
    # FLOPs scale with rows (and, for packed histories, with real history items): rate per row
    rec["achieved_gflops"] = rec["train_mflop_per_sample"] * rec["train_samples_per_s"] / 1e3

    valid = data["valid"]
    if settings.measure_auc:
        log(f"  training {settings.epochs} epoch(s) for valid AUC")
        system.reset(settings.seed)
        t0 = time.perf_counter()
        system.fit(settings.epochs)
        rec["fit_seconds"] = time.perf_counter() - t0
    rec["epochs"] = settings.epochs if settings.measure_auc else 0

    log("  batch scoring")
    p, rec["batch_rows_per_s"] = time_batch_scoring(system, len(valid), settings.eval_batch_size)
    rec["batch_size_eval"] = settings.eval_batch_size
    if settings.measure_auc:
        rec["valid_auc"] = auc(valid.label, p)
        rec["valid_logloss"] = logloss(valid.label, p)
        rec["valid_auc_se"] = auc_standard_error(rec["valid_auc"], valid.label)
    else:
        rec["valid_auc"] = float("nan")
        rec["valid_logloss"] = float("nan")
        rec["valid_auc_se"] = float("nan")

    serving = getattr(system, "predict_valid_serving", None)
    if settings.measure_auc and serving is not None:
        # Requests are answered by a serving copy (bf16 weights for a bf16 system): its own AUC.
        rec["valid_auc_serving"] = auc(valid.label, serving(settings.eval_batch_size))

    rec["ckpt_mb"], rec["weights_mb"] = checkpoint_mb(system)

    log(f"  {settings.requests} requests of {settings.candidates} candidates, single-threaded")
    requests = make_requests(
        data, settings.warmup_requests + settings.requests, settings.candidates, settings.seed
    )
    # Timed first: the first requests a system answers are the ones that build its per-shape
    # kernels, and they must be built single-threaded, as the timed requests run (oneDNN keeps a
    # kernel built for 2 threads and runs it on 1 at twice the time).
    rec.update(time_requests(system, requests, settings.warmup_requests))
    # The request path must score a row's own target as the batch path scored that row; a gap
    # would mean the two paths feed the model differently (e.g. history order or masking).
    rec["request_vs_batch_max_diff"] = max(
        abs(float(system.score_request(q)[0]) - float(p[q.row])) for q in requests[:5]
    )
    rec["candidates"] = settings.candidates

    rec["peak_rss_mb"] = peak_rss_mb()
    return rec
