"""`mmctr bench --serving`: the serving options of trained runs and, with --http, the service
under load, measured in one place on the same requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmctr import cli
from mmctr.data.reader import load_dataset
from mmctr.serving import for_serving
from mmctr.training.loop import predict_split
from mmctr.training.metrics import auc
from mmctr.training.run_dir import load_run
from test_serve import _save_run


@pytest.fixture(scope="module")
def run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_run(tiny_data, tmp_path_factory.mktemp("bsrv") / "din", seed=1)


def test_serving_bench_in_process_and_over_http(run: Path, tiny_data: Path, tmp_path: Path, capsys):
    out = tmp_path / "sb"
    argv = ["bench", "--serving", str(run), "--data", str(tiny_data), "--out", str(out),
            "--requests", "30", "--warmup-requests", "3", "--serving-options", "fp32", "int8-dynamic",
            "--max-history", "4", "--http", "--concurrency", "1", "2", "--duration", "1",
            "--workers", "1", "0"]  # fmt: skip
    assert cli.main(argv) == 0
    res = json.loads((out / "serving_bench.json").read_text())
    assert {p.name for p in out.iterdir()} == {"serving_bench.json", "serving_bench.md", "serving_load.png"}
    (ip,) = res["in_process"]
    assert list(ip["options"]) == ["fp32", "int8-dynamic", "fp32 h4"]
    # the fp32 option's AUC is the run's own valid AUC through the batch path
    data = load_dataset(tiny_data, max_len=64, splits=("valid",))
    model = load_run(run)[1]
    want = auc(data["valid"].label, predict_split(for_serving(model), data["valid"], 8192, bf16=False))
    assert ip["options"]["fp32"]["valid_auc"] == pytest.approx(want, abs=1e-6)
    fp32, capped = ip["options"]["fp32"], ip["options"]["fp32 h4"]
    assert fp32["mflop_per_request"] > 0 and fp32["gflops_p50"] > 0
    assert capped["mflop_per_request"] <= fp32["mflop_per_request"]  # a shorter history costs less
    assert set(ip["matmul_gflops_1thread"]) == {"fp32", "bf16"}
    # the request at the valid p99 history, its rate against both matmul rates
    assert ip["requests_at_p99_history"] > 0
    assert fp32["ms_at_p99_history"] > 0 and fp32["gflops_at_p99_history"] > 0
    assert fp32["pct_of_bf16_matmul_at_p99_history"] > 0 and "pct_of_fp32_matmul_at_p99_history" in fp32
    assert [h["workers"] for h in res["http"]] == [1, 0]  # a worker thread, then the event loop
    for h in res["http"]:
        levels = h["loadtest"]["levels"]
        assert [lv["concurrency"] for lv in levels] == [1, 2]
        assert all(lv["errors"] == 0 and lv["requests"] > 0 for lv in levels)
        paired = h["in_process"]  # each request over HTTP, then the same one in process
        assert paired["requests"] == 300 and paired["p50_ms"] > 0
        assert h["overhead_p50_ms"] == paired["overhead_p50_ms"]
        assert paired["outside_handler_p50_ms"] > 0  # a round trip costs something beyond the handler
        # the overhead is taken against the server's own model time, not the in-process one
        assert paired["model_time"] == "server" and paired["server_model_p50_ms"] > 0
        assert paired["overhead_p50_ms"] > 0 and "overhead_vs_in_process_p50_ms" in paired
        assert h["overhead_unpaired_p50_ms"] == pytest.approx(levels[0]["p50_ms"] - paired["p50_ms"])
    md = (out / "serving_bench.md").read_text()
    assert "| fp32 h4 |" in md and "HTTP overhead" in md
    # an earlier output is not replaced without --overwrite
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_serving_bench_cuts_histories_at_each_runs_max_len(tiny_data: Path, tmp_path: Path):
    """A run trained on its 8 most recent history items is measured on 8, as `mmctr serve` serves it,
    not on the 64 of the organisers' configuration."""
    import torch

    from helpers import as_if_trained
    from mmctr.config import resolve_run_config
    from mmctr.training.run_dir import build_model, save_run

    short = load_dataset(tiny_data, max_len=8, splits=("valid",))
    assert int(load_dataset(tiny_data, splits=("valid",))["valid"].hist_len.max()) > 8  # the cut matters
    cfg = resolve_run_config(
        "svdpp", overrides={"model_params": {"user_buckets": 1000}, "train": {"max_len": 8}}
    )
    torch.manual_seed(0)
    model = as_if_trained(build_model(cfg, short.items), 0).eval()
    run = save_run(
        tmp_path / "svdpp8", cfg, model, short.items, {}, {"n_items": short.items.n_items, "max_len": 8}
    )
    out = tmp_path / "sb"
    argv = ["bench", "--serving", str(run), "--data", str(tiny_data), "--out", str(out),
            "--requests", "20", "--warmup-requests", "2", "--serving-options", "fp32"]  # fmt: skip
    assert cli.main(argv) == 0
    (ip,) = json.loads((out / "serving_bench.json").read_text())["in_process"]
    assert ip["history_len_p99"] <= 8
    want = auc(short["valid"].label, predict_split(for_serving(model), short["valid"], 8192, bf16=False))
    assert ip["options"]["fp32"]["valid_auc"] == pytest.approx(want, abs=1e-6)


def test_serving_bench_refuses_training_and_track1_options(
    run: Path, tiny_data: Path, tmp_path: Path, capsys
):
    base = ["bench", "--serving", str(run), "--data", str(tiny_data), "--out", str(tmp_path / "o")]
    for extra, named in (
        (["--epochs", "2"], "--epochs"),
        (["--track1"], "--track1"),
        (["--rules", "draft"], "--rules"),
    ):
        assert cli.main(base + extra) == 2
        assert named in capsys.readouterr().err
    assert cli.main(base + ["--serving-options", "fp32", "--max-history", "0"]) == 2
    assert "--max-history" in capsys.readouterr().err
    assert cli.main(["bench", "--data", str(tiny_data), "--out", str(tmp_path / "p"), "--http"]) == 2
    assert "--http" in capsys.readouterr().err
    assert (
        cli.main(
            ["bench", "--serving", str(tmp_path), "--data", str(tiny_data), "--out", str(tmp_path / "q")]
        )
        == 2
    )
    assert "not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "q").exists()


def test_the_p99_history_requests_hold_exactly_that_many_of_the_rows_most_recent_items(tiny_data: Path):
    from mmctr.bench.serving import ServingBenchSettings, p99_history_batches

    data = load_dataset(tiny_data, splits=("valid",))
    valid = data["valid"]
    length = int(valid.hist_len.max()) - 1
    settings = ServingBenchSettings(runs=[], data=tiny_data, out=Path("unused"), candidates=7)
    batches = p99_history_batches(data, length, settings, n=5)
    longer = int((valid.hist_len >= length).sum())
    assert len(batches) == min(5, longer)
    rows = {tuple(h[h > 0][-length:]) for h in valid.hist[valid.hist_len >= length]}
    for b in batches:
        assert b.hist.shape == (7, length) and bool((b.hist > 0).all())
        assert tuple(b.hist[0].tolist()) in rows  # a real row's most recent items, in order


def test_the_flop_count_includes_the_attentions_in_place_first_layer():
    """The DIN's request path computes the per-pair first layer with `addmm_`, which torch's own
    counter skips; the bench's count must equal the attention's arithmetic."""
    import torch

    from mmctr.bench.machine import flop_counter
    from mmctr.models.layers import TargetAttention

    torch.manual_seed(0)
    D, H0, H1, N, L = 8, 16, 4, 5, 8
    att = TargetAttention(D, (H0, H1)).eval()
    q, k = torch.randn(N, D), torch.randn(L, D)
    hq, hk = att.item_parts(torch.cat([q, k]))
    with torch.no_grad(), flop_counter() as counter:
        att.forward_shared(q, k, n_keys=6, hq=hq[:N], hk=hk[N:])
    per_pair = D * H0 + H0 * H1 + H1  # q·k through the first layer, the second, the score
    assert counter.get_total_flops() == 2 * N * L * (per_pair + D)  # + the pooling, scores @ keys
