"""Serving options of one trained run, side by side: valid AUC and single-request latency of its
fp32 serving copy, its bf16 serving copy with and without packed linears, an int8
dynamic-quantised copy (torch.ao), and, for a DIN with the `ort` extra installed, ONNX Runtime in
fp32 and with ONNX Runtime's dynamic int8 quantisation (`mmctr.ort`); then the bf16 copy with each
request's history cut to its K most recent items (`--max-history`, `for_serving(max_history=K)`),
its AUC measured on the valid split cut the same way.

Requests are interleaved across the options (request i goes to every option before request i+1), so
a noisy neighbour slows all of them alike. 100 candidates per request from valid rows, 1 thread,
every option warmed up on every bucketed history length first.

    python scripts/bench_serving.py RUN DATA [--requests 300] [--max-history 16 32] [--out results.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmctr.bench.machine import matmul_rate
from mmctr.bench.measure import make_requests
from mmctr.data.reader import load_dataset
from mmctr.serving import cap_history, for_serving, request_batch, score_request, warm_up
from mmctr.training.loop import predict_split
from mmctr.training.metrics import auc
from mmctr.training.run_dir import load_run


def int8_copy(model: nn.Module) -> nn.Module:
    """fp32 serving copy with every nn.Linear that is called as a module quantised to int8 weights
    (activations quantised per call). The DIN attention's first layer stays fp32: its weight is
    sliced, not called."""
    served = for_serving(model, pack=False)  # quantize_dynamic copies it: no opaque oneDNN weights
    names = {
        n for n, m in served.named_modules() if isinstance(m, nn.Linear) and not n.endswith("attention.first")
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        return torch.ao.quantization.quantize_dynamic(served, names, dtype=torch.qint8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--max-history", type=int, nargs="*", default=[16, 32], metavar="K")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    data = load_dataset(args.data, max_len=64, splits=("valid",))
    _, model, _ = load_run(args.run)
    options = {
        "fp32": for_serving(model),
        "bf16, linears not packed": for_serving(model, bf16=True, pack=False),
        "bf16": for_serving(model, bf16=True),
        "int8-dynamic": int8_copy(model),
    }
    # ONNX Runtime sessions have their thread count fixed: 2 to score the split, 1 for requests
    scorers = dict(options)
    workdir = tempfile.TemporaryDirectory(prefix="mmctr-ort-")
    if hasattr(model, "prepare_serving") and importlib.util.find_spec("onnxruntime"):
        from mmctr.ort import OrtDIN

        for name, quantize in (("onnxruntime fp32", None), ("onnxruntime int8-dynamic", "int8")):
            one = OrtDIN.from_model(model, Path(workdir.name) / name.split()[-1], 1, quantize)
            options[name], scorers[name] = one, OrtDIN(*one.paths, threads=2)
    else:
        print("ONNX Runtime options skipped: not a DIN, or the `ort` extra is not installed")
    for k in args.max_history:
        options[f"bf16, history ≤ {k}"] = scorers[f"bf16, history ≤ {k}"] = for_serving(
            model, bf16=True, max_history=k
        )
    valid = data["valid"]
    res: dict[str, dict] = {}
    for name, m in scorers.items():
        torch.set_num_threads(2)
        split = cap_history(valid, getattr(m, "max_history", None))
        res[name] = {"valid_auc": auc(valid.label, predict_split(m, split, 8192, bf16=False))}
    torch.set_num_threads(1)
    for m in options.values():
        warm_up(m, max_len=data.max_len)  # ONNX Runtime too: its first runs allocate
    # the host's matmul rate moves by 2-3x from one minute to the next on this VM: say what it was
    rates = [matmul_rate("bf16", 1).gflops]
    reqs = make_requests(data, args.warmup + args.requests, 100, 2025)
    times: dict[str, list[float]] = {k: [] for k in options}
    for i, r in enumerate(reqs):
        batch = request_batch(r.hist, r.targets, r.likes, r.views)
        for name, m in options.items():
            t0 = time.perf_counter()
            score_request(m, batch)
            if i >= args.warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    rates.append(matmul_rate("bf16", 1).gflops)
    lengths = np.array([(r.hist > 0).sum() for r in reqs[args.warmup :]])
    print(
        f"{args.run}: {args.requests} requests, history length median {np.median(lengths):.0f}, p99 "
        f"{np.percentile(lengths, 99):.0f}; load average {os.getloadavg()[0]:.2f}; bf16 1-thread "
        f"2048² matmul {rates[0]:.0f} GFLOP/s before the requests, {rates[1]:.0f} after"
    )
    print("| option | valid AUC | request p50 ms | p99 ms |\n|---|---|---|---|")
    for name in options:
        t = np.array(times[name])
        res[name].update(p50_ms=float(np.percentile(t, 50)), p99_ms=float(np.percentile(t, 99)))
        print(
            f"| {name} | {res[name]['valid_auc']:.4f} | {res[name]['p50_ms']:.2f} | {res[name]['p99_ms']:.2f} |"
        )
    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")  # never a half-written results file
        out = {"run": str(args.run), "bf16_matmul_gflops_before_after": rates, "options": res}
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
