"""`mmctr bench`: a tiny end-to-end run writes well-formed records, a table and a plot; peers that are
not installed are skipped with a reason. No wall-clock time is asserted anywhere."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from mmctr.bench.harness import resolve_systems
from mmctr.bench.ours import bench_config
from mmctr.bench.plot import pareto_front
from mmctr.bench.spec import BenchSettings, SystemSpec
from mmctr.cli import main
from mmctr.errors import ConfigError

REQUIRED = (
    "system",
    "model",
    "params",
    "train_samples_per_s",
    "infer_p50_ms",
    "infer_p99_ms",
    "peak_rss_mb",
    "valid_auc",
)
FINITE = (
    "params",
    "ckpt_mb",
    "train_samples_per_s",
    "train_step_ms",
    "infer_p50_ms",
    "infer_p99_ms",
    "batch_rows_per_s",
    "peak_rss_mb",
    "valid_auc",
    "train_gflop_per_step",
    "achieved_gflops",
    "peak_gflops",
    "pct_of_peak",
)
TINY_ARGS = [
    "--epochs", "1",
    "--batch-size", "256",
    "--warmup-steps", "1",
    "--timed-steps", "2",
    "--candidates", "10",
    "--requests", "5",
    "--warmup-requests", "2",
    "--eval-batch-size", "512",
    "--matmul-n", "128",
    "--max-train-rows", "1024",
]  # fmt: skip


def _check_records(out: Path, systems: set[str]) -> list[dict]:
    records = json.loads((out / "bench.json").read_text())
    assert isinstance(records, list) and {r["system"] for r in records} == systems
    for r in records:
        for key in REQUIRED:
            assert key in r, f"{r['system']}: {key} missing"
        for key in FINITE:
            assert isinstance(r[key], (int, float)) and math.isfinite(r[key]), (
                f"{r['system']}: {key}={r[key]!r}"
            )
        assert r["params"] > 0 and r["train_samples_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert 0.0 <= r["valid_auc"] <= 1.0
        assert 0 < r["infer_p50_ms"] <= r["infer_p99_ms"]
        assert r["infer_threads"] == 1 and r["candidates"] == 10
        assert r["precision"] in ("fp32", "bf16") and r["torch"] and r["cpu"]
        if r["precision"] == "fp32":  # one request and the batch path agree on the same row
            assert r["request_vs_batch_max_diff"] < 1e-4
    md = (out / "bench.md").read_text()
    for r in records:
        assert f"`{r['system']}`" in md
    png = out / "auc_latency.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return records


def test_tiny_bench_writes_records_table_and_plot(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    capped = "mmctr/din[max_history=2]@fp32"  # served on the 2 most recent history items
    models = ["din", capped.removeprefix("mmctr/")]
    rc = main(
        ["bench", "--data", str(tiny_data), "--models", *models, "--peers", "--out", str(out), *TINY_ARGS]
    )
    assert rc == 0
    rec, cap = _check_records(out, {"mmctr/din", capped})
    assert rec["model"] == "din" and rec["family"] == "mmctr"
    # the cap reaches the serving copy and the AUC's batch path alike (their scores agree above)
    assert "2 most recent" in cap["inputs"] and "max_history" not in json.dumps(cap["hparams"])
    assert rec["train_steps_timed"] == 2 and rec["epochs"] == 1
    machine = json.loads((out / "machine.json").read_text())
    assert {(m["dtype"], m["threads"]) for m in machine["matmul"]} >= {("fp32", 1), ("bf16", 1)}


@pytest.mark.skipif(importlib.util.find_spec("fuxictr") is not None, reason="fuxictr is installed here")
def test_peer_not_installed_is_skipped_with_reason() -> None:
    specs, skipped = resolve_systems(["din"], ["fuxictr"], {"fuxictr": sys.executable})
    assert [s.system for s in specs] == ["mmctr/din"]
    assert skipped[0]["system"] == "fuxictr/din" and "not installed" in skipped[0]["reason"]


def test_system_names() -> None:
    s = SystemSpec.parse("mmctr/din@bf16")
    assert (s.family, s.model, s.variant) == ("mmctr", "din", "bf16")
    assert SystemSpec.parse("deepctr-torch/din").family == "deepctr-torch"
    s = SystemSpec.parse("mmctr/din[attention_hidden=[128,64],batch_norm=false]@bf16")
    assert (s.model, s.variant) == ("din", "bf16")
    assert s.params == {"attention_hidden": [128, 64], "batch_norm": False}
    cfg = bench_config(s, BenchSettings(data="unused"))
    assert cfg.model_params["attention_hidden"] == [128, 64] and cfg.model_params["batch_norm"] is False
    assert cfg.model_params["dnn_hidden"] == [1024, 512, 256]  # the rest stays the YAML's
    # max_history configures the serving copy, not the model
    s = SystemSpec.parse("mmctr/din[max_history=16]@bf16")
    assert (
        s.params == {"max_history": 16}
        and "max_history" not in bench_config(s, BenchSettings("x")).model_params
    )
    for bad in (
        "din",
        "mmctr/din@fp16",
        "deepctr-torch/qin",
        "other/din",
        "fuxictr/din[embedding_dim=8]",
        "mmctr/din[attention_hidden]",
        "mmctr/din[a=1]x",
    ):
        with pytest.raises(ValueError):
            SystemSpec.parse(bad)
    with pytest.raises(ConfigError, match="unknown model"):
        resolve_systems(["no_such_model"], [])


def test_pareto_front() -> None:
    # (p99 ms, AUC): the slow-and-worse point and the dominated middle point are off the front
    pts = [(1.0, 0.70), (2.0, 0.80), (3.0, 0.75), (5.0, 0.60), (8.0, 0.85)]
    assert pareto_front(pts) == [0, 1, 4]


@pytest.mark.slow
def test_bench_with_installed_peers(tiny_data: Path, tmp_path: Path) -> None:
    """The same tiny run with every peer that is installed (deepctr-torch here, FuxiCTR in its venv)."""
    from mmctr.bench.harness import find_python

    peers = [p for p in ("deepctr-torch", "fuxictr") if find_python(p)[1] is None]
    if not peers:
        pytest.skip("no peer installed")
    out = tmp_path / "bench"
    args = ["bench", "--data", str(tiny_data), "--models", "din", "--peers", *peers, "--out", str(out)]
    assert main([*args, *TINY_ARGS]) == 0
    records = _check_records(out, {"mmctr/din", *(f"{p}/din" for p in peers)})
    ours = next(r for r in records if r["system"] == "mmctr/din")
    assert set(ours["vs"]) == {f"{p}/din" for p in peers}


SCRIPT_ARGS = {  # what each script needs besides --data to get as far as reading it
    "bench_models.py": ["--out", "{tmp}/out.json"],
    "bench_compress.py": ["--runs-dir", "{tmp}/runs", "--out", "{tmp}/out.json"],
    "full_scale.py": [],
}


@pytest.mark.parametrize("script", sorted(SCRIPT_ARGS))
def test_bench_script_on_a_wrong_data_root_says_so_without_a_traceback(script: str, tmp_path: Path) -> None:
    """The benchmark scripts end bad input as `mmctr` does: one line naming the path, exit status 2."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    args = ["--data", str(tmp_path), *(a.format(tmp=tmp_path) for a in SCRIPT_ARGS[script])]
    proc = subprocess.run(
        [sys.executable, str(root / "scripts" / script), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{script}: error: {tmp_path}"), proc.stderr
    assert not (tmp_path / "out.json").exists()


def test_plot_labels_overlap_neither_each_other_nor_the_markers():
    """The bench's AUC-latency plot names every system; systems close on both axes (a model and its
    history-capped variant) used to get labels drawn over each other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmctr.bench.plot import label_groups, place_labels

    names = [
        "mmctr/din@fp32",
        "mmctr/din[max_history=16]@fp32",
        "mmctr/din[attention_hidden=[128,64]]@fp32",
        "mmctr/din[attention_hidden=[128,64],max_history=16]@fp32",
    ]
    pts = [(17.9, 0.6148), (7.9, 0.6146), (6.0, 0.5834), (4.9, 0.5827)]  # (p99 ms, AUC) of each
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(*zip(*pts, strict=True))
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.2)
    fig.tight_layout()
    place_labels(ax, label_groups([({"name": n}, p) for n, p in zip(names, pts, strict=True)]), pts, [])
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.texts]
    assert sorted(t.get_text() for t in ax.texts) == sorted(names)
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[:i])
        for x, y in pts:
            px, py = ax.transData.transform((x, y))
            assert not (a.x0 < px < a.x1 and a.y0 < py < a.y1)  # no label over a marker's centre
    plt.close(fig)
