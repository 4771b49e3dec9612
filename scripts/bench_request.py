"""Latency of one variant of the DIN request path, one process per variant (oneDNN caches kernels per
process), on the same 300 requests of 100 candidates from valid rows (20 warm-up), single-threaded.

    python scripts/bench_request.py RUN DATA "served,bucket=8,chunk=2048,warm=1"

VARIANT: fp32 | autocast | served (bf16 serving copy), then bucket=, chunk=, cap= (history cap of the
served copy), warm=1 options."""

import functools
import json
import sys
import time

import numpy as np
import torch

from mmctr.bench.measure import make_requests
from mmctr.data.reader import load_dataset
from mmctr.serving import for_serving, request_batch, score_request, warm_up
from mmctr.training.run_dir import load_run

torch.set_num_threads(1)
run, root, variant = sys.argv[1], sys.argv[2], sys.argv[3]
data = load_dataset(root, max_len=64, splits=("valid",))
m = load_run(run)[1]  # the run's own item table; the requests come from `data`
reqs = make_requests(data, 320, 100, 2025)
Ls = np.array([(r.hist > 0).sum() for r in reqs[20:]])
opts = dict(v.split("=") for v in variant.split(",")[1:])
base = variant.split(",")[0]
bf16 = base != "fp32"
cap = int(opts["cap"]) if "cap" in opts else None  # for_serving(max_history=cap)
model = for_serving(m, bf16=True, max_history=cap) if base == "served" else m
bucket = int(opts.get("bucket", 8))
chunk = int(opts["chunk"]) if "chunk" in opts else None  # None: forward_shared's CHUNK_BYTES default
model.forward_request = functools.partial(model.forward_request, bucket=bucket)
att = model.attention
att.forward_shared = functools.partial(att.forward_shared, pairs_per_chunk=chunk)
if opts.get("warm") == "1":
    warm_up(model, bf16=bf16)
ts = []
for i, r in enumerate(reqs):
    t0 = time.perf_counter()
    score_request(model, request_batch(r.hist, r.targets, r.likes, r.views), bf16=bf16)
    if i >= 20:
        ts.append((time.perf_counter() - t0) * 1e3)
ts = np.array(ts)
print(
    json.dumps(
        {
            "variant": variant,
            "p50": round(float(np.percentile(ts, 50)), 2),
            "p99": round(float(np.percentile(ts, 99)), 2),
            "mean": round(float(ts.mean()), 2),
            "max": round(float(ts.max()), 2),
            "ms_L_ge_40": round(float(ts[Ls >= 40].mean()), 2),
            "history_len_p50": float(np.median(Ls)),
            "history_len_p99": float(np.percentile(Ls, 99)),
        }
    ),
    flush=True,
)
