"""bench.md from the records: one table, the ratios against peers, the machine, what each system sees."""

from __future__ import annotations

import math
from typing import Any

from mmctr.bench.machine import MachineInfo


def _num(x: Any, fmt: str = ",.0f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, fmt)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def table(records: list[dict[str, Any]]) -> str:
    head = (
        "| system | precision | params | ckpt MB (weights) | train samples/s | step ms (data + compute) "
        "| infer p50 ms | infer p99 ms | batch rows/s | peak RSS MB | valid AUC | GFLOP/s | % of peak |"
    )
    rows = [head, "|" + "---|" * 13]
    for r in records:
        rows.append(
            "| "
            + " | ".join(
                [
                    f"`{r['system']}`",
                    r["precision"],
                    _num(r["params"]),
                    f"{_num(r['ckpt_mb'], '.1f')} ({_num(r.get('weights_mb'), '.1f')})",
                    _num(r["train_samples_per_s"]),
                    f"{_num(r['train_step_ms'], '.0f')} ({_num(r['train_data_ms'], '.0f')} + {_num(r['train_compute_ms'], '.0f')})",
                    _num(r["infer_p50_ms"], ".2f"),
                    _num(r["infer_p99_ms"], ".2f"),
                    _num(r["batch_rows_per_s"]),
                    _num(r["peak_rss_mb"]),
                    _num(r["valid_auc"], ".4f")
                    + (f" ± {r['valid_auc_se']:.4f}" if _finite(r.get("valid_auc_se")) else ""),
                    _num(r["achieved_gflops"], ".1f"),
                    _num(r["pct_of_peak"], ".1f"),
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def ratios(records: list[dict[str, Any]]) -> str:
    lines = []
    for r in records:
        for peer, v in (r.get("vs") or {}).items():
            lines.append(
                f"- `{r['system']}` vs `{peer}`: train samples/s ×{v['train_speedup']:.1f}, "
                f"p99 latency ×{v['p99_speedup']:.1f} lower, batch scoring ×{v['batch_speedup']:.1f}, "
                f"valid AUC {v['auc_delta']:+.4f}"
            )
    return "\n".join(lines) or "- (no peer measured in this run)"


def _batch_words(hp: dict[str, Any], first: dict[str, Any]) -> str:
    """The batch a training step really had: the configured one, or all train rows when fewer."""
    batch, rows = hp.get("batch_size"), first.get("train_rows")
    if isinstance(batch, int) and isinstance(rows, int) and rows < batch:
        return f"batch {rows:,} (all train rows; {batch:,} configured, train cut by --max-train-rows)"
    return f"batch {batch:,}" if isinstance(batch, int) else f"batch {batch}"


def write_markdown(records: list[dict[str, Any]], machine: MachineInfo, meta: dict[str, Any]) -> str:
    s = meta.get("settings", {})
    hp = s.get("hparams", {})
    first = records[0] if records else {}
    peaks = ", ".join(f"{m.dtype} {m.threads} thread(s): {m.gflops_best:,.0f}" for m in machine.matmul)
    parts = [
        "# mmctr bench",
        "",
        f"Command: `{meta.get('command', '')}`" if meta.get("command") else "",
        "",
        f"Machine: {machine.cpu}, {machine.cores} cores ({' '.join(machine.isa)}), torch {machine.torch}, "
        f"Python {machine.python}. Matmul {machine.matmul[0].n if machine.matmul else '?'}² GFLOP/s (best of repeats): {peaks}.",
        "",
        f"Data: `{meta.get('data', '')}` — {_num(first.get('train_rows'))} train rows, "
        f"{_num(first.get('valid_rows'))} valid rows; history max_len {hp.get('max_len')}.",
        f"Shared hyperparameters: embedding dim {hp.get('embedding_dim')}, DNN {hp.get('dnn_hidden')}, "
        f"attention MLP {hp.get('attention_hidden')}, dropout {hp.get('net_dropout')} (attention "
        f"{hp.get('attention_dropout')}), batch norm {hp.get('batch_norm')}, {_batch_words(hp, first)}, "
        f"Adam lr {hp.get('lr')}, embedding L2 {hp.get('embedding_reg')}, {s.get('epochs')} epoch(s) for AUC "
        f"(best epoch on valid).",
        "",
        table(records),
        "",
        f"Train samples/s: median over {s.get('timed_steps')} timed steps after {s.get('warmup_steps')} "
        f"warm-up steps, each step = getting the batch from the system's own input pipeline + forward, "
        f"loss, backward, optimiser step, on {first.get('train_threads', '?')} thread(s). "
        f"Latency: one request = one user's history (a real valid row) + {s.get('candidates')} candidates, "
        f"numpy in → probabilities out, 1 thread, p50/p99 over {s.get('requests')} requests after "
        f"{s.get('warmup_requests')} warm-ups. Batch rows/s: the whole valid split at batch "
        f"{s.get('eval_batch_size')} with the system's own batch-prediction API. GFLOP/s: FLOPs of one "
        f"training step counted by torch's FlopCounterMode (as executed: padded positions count) × "
        f"steps/s; % of peak against the matmul rate of the same precision. "
        f"Timings are medians over {meta.get('repeats', 1)} process(es) per system; AUC from the first. "
        "Params: trainable parameters. Ckpt MB: everything the system saves (ours: a run directory "
        "that includes the item table the model looks up; the peers read theirs from input files), "
        "in brackets the learned-weights file alone. Valid AUC ± its Hanley–McNeil standard error "
        "on this valid set (sampling noise of the valid rows, not of the training seed).",
        "",
        "## Ratios (same run, same data, same hyperparameters)",
        "",
        ratios(records),
        "",
        "## What each system sees",
        "",
        *[f"- `{r['system']}`: {r['inputs']}" for r in records],
        "",
    ]
    busy = [r for r in records if r.get("load_avg_max", 0) >= 1.0]
    if busy:
        parts += [
            "## Caution: shared machine",
            "",
            *[
                f"- `{r['system']}` started while the 1-min load average was up to "
                f"{r['load_avg_max']:.1f}: other jobs shared the cores, its timings are pessimistic."
                for r in busy
            ],
            "",
        ]
    if meta.get("skipped"):
        parts += ["## Skipped", "", *[f"- `{s['system']}`: {s['reason']}" for s in meta["skipped"]], ""]
    return "\n".join(parts)
