"""Full-scale memory and speed: load a full-size data root (3.6M train rows) and train the DIN.

    python scripts/full_scale.py --data DATA_FULL [--steps 200 | --epoch] [--fp32]

Prints load time, peak RSS after loading, train samples/s and peak RSS while training, as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=200, help="timed training steps (after 5 warm-up steps)")
    ap.add_argument("--epoch", action="store_true", help="train one whole epoch instead of --steps")
    ap.add_argument("--fp32", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from mmctr.config import resolve_run_config
    from mmctr.data.batches import iter_batches
    from mmctr.data.reader import load_dataset
    from mmctr.training.loop import loss_fn, seed_everything
    from mmctr.training.run_dir import build_model

    cfg = resolve_run_config("din", None, {"train": {"bf16": not args.fp32}})
    t0 = time.perf_counter()
    data = load_dataset(args.data, max_len=cfg.train.max_len, splits=("train", "valid"))
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_mb()
    train = data["train"]
    print(f"loaded {len(train):,} train rows in {load_s:.1f} s; peak RSS {rss_loaded:,.0f} MB", flush=True)

    seed_everything(cfg.train.seed)
    model = build_model(cfg, data.items)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    tc = cfg.train
    steps, times, samples = 0, [], 0
    t_epoch = time.perf_counter()
    limit = None if args.epoch else args.steps + 5
    for batch in iter_batches(train, tc.batch_size, shuffle=True, rng=np.random.default_rng(0)):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=tc.bf16):
            logits = model(batch).float()
        loss = loss_fn(model, logits, batch, tc)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        if steps > 5:
            times.append(time.perf_counter() - t)
            samples += len(batch)
        if steps % 50 == 0:
            print(f"step {steps}: {samples / sum(times):,.0f} samples/s, loss {loss.item():.4f}", flush=True)
        if limit and steps >= limit:
            break
    result = {
        "rows": len(train),
        "load_seconds": load_s,
        "peak_rss_mb_after_load": rss_loaded,
        "peak_rss_mb_training": peak_rss_mb(),
        "steps": steps,
        "batch_size": tc.batch_size,
        "bf16": tc.bf16,
        "median_step_s": float(np.median(times)),
        "train_samples_per_s": samples / sum(times),
        "median_samples_per_s": tc.batch_size / float(np.median(times)),
        "epoch_seconds_measured": time.perf_counter() - t_epoch if args.epoch else None,
        "epoch_seconds_extrapolated": len(train) / (samples / sum(times)),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    from mmctr.errors import script_exit

    script_exit(main)
