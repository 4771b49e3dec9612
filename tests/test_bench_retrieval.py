"""`mmctr bench --track1` on tiny generated Track-1 data: bm25, random and the flat index kind give
rows with every column, a markdown table and a PNG; the Pareto front drops a dominated point; the
restricted index search stays inside its rows; a second run into the same --out is refused without
--overwrite; options of the other track are refused. No wall-clock time is asserted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmctr.bench.plot_retrieval import front_names, plot_score_latency
from mmctr.bench.retrieval import (
    JSON_NAME,
    MD_NAME,
    PNG_NAME,
    resolve_retrievers,
    train_minutes,
)
from mmctr.cli import main
from mmctr.errors import ConfigError, DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COLUMNS = (
    "overall",
    "mmdocir",
    "m2kr",
    "bytes_per_page",
    "bytes_per_passage",
    "items_per_s",
    "query_ms_p50",
    "query_ms_p99",
    "train_minutes",
    "on_front",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmctr.retrieval.data.synth import generate

    root = tmp_path_factory.mktemp("t1") / "data"
    generate(root, scale="tiny", seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def bench_out(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("faiss")
    pytest.importorskip("bm25s")
    out = tmp_path_factory.mktemp("bench") / "out"
    argv = ["bench", "--track1", "--data", str(tiny), "--out", str(out)]
    rc = main([*argv, "--retrievers", "bm25", "random", "--index-kinds", "flat"])
    assert rc == 0
    return out


def _bench(*argv: object) -> int:
    return main(["bench", *map(str, argv)])


def test_rows_have_every_column(bench_out: Path) -> None:
    result = json.loads((bench_out / JSON_NAME).read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["bm25", "random", "index:flat"]
    assert result["machine"]["threads"] == 1 and result["warm_cache"] is False
    for name, row in rows.items():
        s = row["summary"]
        assert set(COLUMNS) <= set(s), name
        for key in ("overall", "mmdocir", "m2kr"):
            assert 0.0 <= s[key] <= 1.0, (name, key)
        assert s["overall"] == pytest.approx((s["mmdocir"] + s["m2kr"]) / 2)
        assert s["query_ms_p50"] is not None and s["query_ms_p50"] <= s["query_ms_p99"]
        assert s["train_minutes"] == 0.0  # nothing here needs training
        assert row["mmdocir_costs"]["queries"] == row["scores"]["mmdocir"]["questions"], name
    assert rows["bm25"]["summary"]["mmdocir"] > rows["random"]["summary"]["mmdocir"]
    flat = rows["index:flat"]
    assert flat["kind"] == "index" and flat["index_kind"] == "flat"
    # a flat store holds one float32 MiniLM vector (384-d) per page, plus a small header
    assert 384 * 4 <= flat["summary"]["bytes_per_page"] < 384 * 4 + 256
    for task in ("mmdocir", "m2kr"):
        c = flat[f"{task}_costs"]
        assert c["load_ms"] > 0 and c["build_seconds"] >= 0 and c["short_rankings"] == 0
        assert c["encode_from"] == "this row"  # no dense row ran: the index rows encoded
    assert rows["random"]["summary"]["bytes_per_page"] == 0
    assert set(result["pareto_front"]) <= set(rows) and result["pareto_front"]
    assert [r for r in rows if rows[r]["summary"]["on_front"]] == [
        r for r in rows if r in result["pareto_front"]
    ]


def test_markdown_table_and_png(bench_out: Path) -> None:
    md = (bench_out / MD_NAME).read_text()
    assert "| row | overall | MMDocIR | M2KR | bytes/page | bytes/passage | items/s |" in md
    for name in ("bm25", "random", "index:flat"):
        assert f"\n| {name} | **" in md, name
    assert "## Index options" in md and "\n| flat | mmdocir |" in md
    assert (bench_out / PNG_NAME).read_bytes()[:8] == PNG_MAGIC


def test_rerun_is_refused_without_overwrite(bench_out: Path, tiny: Path, tmp_path: Path, capsys) -> None:
    before = (bench_out / JSON_NAME).read_text()
    rc = _bench("--track1", "--data", tiny, "--out", bench_out, "--retrievers", "random", "--index-kinds")
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert (bench_out / JSON_NAME).read_text() == before
    copy = tmp_path / "copy"
    shutil.copytree(bench_out, copy)
    rc = _bench(
        "--track1", "--data", tiny, "--out", copy, "--retrievers", "random", "--index-kinds", "--overwrite"
    )
    assert rc == 0
    assert [r["name"] for r in json.loads((copy / JSON_NAME).read_text())["rows"]] == ["random"]


def test_options_of_the_other_track_are_refused(tiny: Path, tmp_path: Path, capsys) -> None:
    assert _bench("--data", tiny, "--out", tmp_path / "a", "--retrievers", "bm25") == 2
    assert "add --track1" in capsys.readouterr().err
    assert _bench("--track1", "--data", tiny, "--out", tmp_path / "b", "--models", "din") == 2
    assert "drop --track1" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _row(name: str, p50: float | None, score: float, kind: str = "retriever") -> dict:
    return {"name": name, "kind": kind, "summary": {"query_ms_p50": p50, "overall": score}}


def test_pareto_front_drops_dominated_rows(tmp_path: Path) -> None:
    rows = [
        _row("random", 0.0, 0.05),  # 0 ms: drawn at the log axis' floor, still the fastest
        _row("bm25", 0.5, 0.40),
        _row("dense", 3.0, 0.30),  # slower and worse than bm25: dominated
        _row("index:flat", 3.0, 0.45, "index"),
        _row("index:hnsw", 2.0, 0.45, "index"),  # as good as flat and faster: flat is dominated
        _row("hybrid", 40.0, 0.70),
        _row("no_latency", None, 0.99),  # not measured: neither plotted nor on the front
    ]
    assert front_names(rows) == ["random", "bm25", "index:hnsw", "hybrid"]
    png = plot_score_latency(rows, tmp_path / "p.png", threads=1)
    assert png.read_bytes()[:8] == PNG_MAGIC
    empty = plot_score_latency([], tmp_path / "empty.png")
    assert empty.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq", "int8", "binary"])
def test_search_within_stays_inside_the_rows(kind: str) -> None:
    pytest.importorskip("faiss")
    from mmctr.bench.retrieval import search_within
    from mmctr.retrieval.index.vectors import VectorStore

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store = VectorStore(kind, 32)
    store.add(x)
    rows = list(range(100, 130))
    got = search_within(store, x[[110]], rows, 5)
    assert got and set(got) <= set(rows)
    if kind in ("flat", "int8"):  # exact kinds: the in-subset top 5 by inner product
        assert got == [100 + int(i) for i in np.argsort(-(x[100:130] @ x[110]))[:5]]
    else:
        assert got[0] == 110  # the query's own vector is found inside its rows


def test_train_minutes_and_the_trained_retriever_needs_a_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert train_minutes(run) is None
    (run / "metrics.json").write_text(json.dumps({"train_seconds": 90}))
    assert train_minutes(run) == 1.5
    (run / "metrics.json").write_text("{not json")
    with pytest.raises(DataError, match="metrics.json"):
        train_minutes(run)
    with pytest.raises(ConfigError, match="trained"):
        resolve_retrievers(["trained"], None)  # unknown, or known and needing --run: named either way
    with pytest.raises(ConfigError, match="no_such"):
        resolve_retrievers(["no_such"], None)


def test_default_list_skips_a_retriever_whose_model_is_missing(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmctr.bench.retrieval import Track1BenchSettings, run_track1_bench
    from mmctr.retrieval import retrievers

    def missing(options):
        raise ConfigError("model example/weights not found; download it first")

    registry = {
        "random": retrievers.RETRIEVERS["random"],
        "needs_weights": retrievers.RetrieverEntry("a model that is not here", missing),
    }
    monkeypatch.setattr(retrievers, "RETRIEVERS", registry)
    settings = Track1BenchSettings(data=tiny, out=tmp_path / "out", index_kinds=[], progress=False)
    result = run_track1_bench(settings)
    assert [r["name"] for r in result["rows"]] == ["random"]
    assert result["skipped"] == [
        {"name": "needs_weights", "reason": "model example/weights not found; download it first"}
    ]
    assert "Skipped `needs_weights`" in (tmp_path / "out" / MD_NAME).read_text()
    settings = Track1BenchSettings(
        data=tiny, out=tmp_path / "named", retrievers=["needs_weights"], index_kinds=[], progress=False
    )
    with pytest.raises(ConfigError, match="not found"):  # asked for by name: it fails
        run_track1_bench(settings)
    assert not (tmp_path / "named").exists()
