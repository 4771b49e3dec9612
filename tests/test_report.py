"""`mmctr report`: inputs recognised by their files, one self-contained HTML page, checked in a
real browser (headless Chromium) when one is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mmctr import cli
from mmctr.report import write_report
from mmctr.report.collect import ReportInputError, collect, detect, expand

SMALL_DIN = {"embedding_dim": 8, "dnn_hidden": [16], "attention_hidden": [8]}


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch):
    if "report" not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "report"))


@pytest.fixture(scope="module")
def runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny Track 2 runs of two epochs: DIN at its defaults but small, and one with a higher lr."""
    from mmctr.config import resolve_run_config
    from mmctr.data.reader import load_dataset
    from mmctr.training.loop import train_and_save

    root = tmp_path_factory.mktemp("runs")
    out = []
    for name, train in (("run_a", {}), ("run_b", {"lr": 0.004})):
        over = {"model_params": SMALL_DIN, "train": {"epochs": 2, "batch_size": 256, "max_len": 16, **train}}
        cfg = resolve_run_config("din", None, over)
        data = load_dataset(tiny_data, max_len=cfg.train.max_len, splits=("train", "valid"))
        train_and_save(cfg, data, root / name, progress=False, log=lambda _m: None)
        out.append(root / name)
    return out


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bench output in the real schema (bench.json: a list of records; machine.json; meta.json)."""
    d = tmp_path_factory.mktemp("bench") / "bench_out"
    d.mkdir()
    rec = {
        "family": "mmctr",
        "model": "din",
        "precision": "bf16",
        "params": 2200322,
        "train_samples_per_s": 6556.1,
        "infer_p50_ms": 5.5,
        "infer_p99_ms": 14.7,
        "valid_auc": 0.615169,
    }
    records = [
        {**rec, "system": "mmctr/din@bf16"},
        {**rec, "system": "mmctr/din[max_history=16]@bf16", "infer_p99_ms": 7.5, "valid_auc": 0.615013},
        {
            **rec,
            "system": "fuxictr/din",
            "family": "fuxictr",
            "precision": "fp32",
            "train_samples_per_s": 265.0,
            "infer_p50_ms": 111.0,
            "infer_p99_ms": 133.7,
            "valid_auc": 0.618207,
        },
    ]
    (d / "bench.json").write_text(json.dumps(records))
    machine = {
        "cpu": "Test CPU",
        "cores": 2,
        "torch": "2.x",
        "python": "3.11",
        "isa": ["avx2"],
        "matmul": [{"dtype": "fp32", "threads": 1, "n": 256, "gflops": 100.0, "gflops_best": 110.0}],
    }
    (d / "machine.json").write_text(json.dumps(machine))
    (d / "meta.json").write_text(json.dumps({"data": "demo_out/data_small_seed0"}))
    return d


@pytest.fixture(scope="module")
def t1_score(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `mmctr retrieval score --json` prints, for a small hand-made truth and ranking."""
    from mmctr.retrieval.metrics import evaluate

    truth = SimpleNamespace(
        mmdocir={"10": ["1"], "11": ["2", "3"], "12": ["0"]},
        m2kr={"0": ["a"], "1": ["b"]},
        kind={"10": "text", "11": "table", "12": "text", "0": "image", "1": "wit"},
    )
    ranked = {"10": ["1", "4"], "11": ["3", "9"], "12": ["5", "6", "0"], "0": ["c", "a"], "1": ["b"]}
    path = tmp_path_factory.mktemp("t1score") / "bm25_score.json"
    path.write_text(json.dumps(evaluate(ranked, ranked, truth, "final")))
    return path


@pytest.fixture(scope="module")
def t1_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `mmctr retrieval demo` folder: a tiny data root, a submission that ranks a wrong
    candidate first for every question (and the gold nowhere), its score as the summary."""
    from mmctr.commands.retrieval import known_ids, score
    from mmctr.retrieval.data import load_truth
    from mmctr.retrieval.data.synth import generate
    from mmctr.retrieval.submission import write_submission

    demo = tmp_path_factory.mktemp("t1demo") / "retrieval_demo"
    root = demo / "data_tiny_seed0"
    generate(root, scale="tiny", seed=0, progress=False)
    truth = load_truth(root)
    cands = known_ids(root)
    gold = {**truth.mmdocir, **truth.m2kr}
    ranked = {q: sorted(set(cands[q]) - set(gold[q]))[:5] for q in gold}
    csv = demo / "submission_wrong_final.csv"
    write_submission(ranked, csv, "final")
    result = score(csv, root / "truth", "final", root)
    summary = {"scores": result, "predict": {"retriever": "wrong"}, "wall_seconds": 1.0}
    (demo / "retrieval_demo_summary.json").write_text(json.dumps(summary))
    return demo


@pytest.fixture(scope="module")
def inputs(runs, bench_dir, t1_score, t1_demo, tiny_data) -> list[Path]:
    return [*runs, bench_dir, t1_score, t1_demo, tiny_data / "MicroLens_1M_x1" / "item_info.parquet"]


@pytest.fixture(scope="module")
def report(inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(inputs, out, title="test report")


def auc_strings(runs: list[Path], bench_dir: Path) -> list[str]:
    aucs = [json.loads((r / "metrics.json").read_text())["valid_auc"] for r in runs]
    aucs += [r["valid_auc"] for r in json.loads((bench_dir / "bench.json").read_text())]
    return [f"{a:.4f}" for a in aucs]


# ----------------------------------------------------------------------------------------------
# inputs


def test_each_kind_is_recognised_by_its_files(inputs, runs, bench_dir, t1_score, t1_demo, tiny_data):
    kinds = [detect(p) for p in inputs]
    assert kinds == ["track2_run", "track2_run", "bench", "track1_score", "track1_demo", "embedding"]
    assert detect(bench_dir / "bench.json") == "bench"
    # a folder holding runs stands for them; a data root is none of the kinds
    assert expand([runs[0].parent]) == [("track2_run", runs[0]), ("track2_run", runs[1])]
    assert detect(tiny_data) is None


def test_records_carry_what_the_page_shows(inputs, runs):
    got = collect(inputs)
    a, b = got.track2_runs
    assert a.model == "din" and len(a.history) == 2 and "valid_auc" in a.history[0]
    assert "train.lr=0.004" in b.config_diff and not any("train.lr" in d for d in a.config_diff)
    assert any(d.startswith("model.embedding_dim=") for d in a.config_diff)
    assert len(got.benches[0].records) == 3 and got.benches[0].machine["cores"] == 2
    demo = next(r for r in got.track1 if r.source == "demo")
    # every question was missed: the gallery has some of both tasks, with their page images
    tasks = {m.task for m in demo.misses}
    assert tasks == {"mmdocir", "m2kr"}
    doc = next(m for m in demo.misses if m.task == "mmdocir")
    assert doc.gold_image and doc.top_image and doc.gold_id != doc.top_id
    assert got.embeddings[0].emb.shape[1] == 128


NOT_INPUTS = {  # file name -> content; None: an empty directory
    "empty-dir": None,
    "notes.txt": "hi",
    "other.json": '{"a": 1}',
    "broken.json": "{",
}


@pytest.mark.parametrize("name", NOT_INPUTS)
def test_unknown_input_is_a_named_error(tmp_path: Path, name: str):
    path = tmp_path / name
    if NOT_INPUTS[name] is None:
        path.mkdir()
    else:
        path.write_text(NOT_INPUTS[name])
    with pytest.raises(ReportInputError) as err:
        collect([path])
    msg = str(err.value)
    assert str(path) in msg
    if name == "broken.json":
        assert "not valid JSON" in msg
    else:
        assert "accepted:" in msg and "Track 2 run directory" in msg and "item_info parquet" in msg


def test_cli_reports_bad_inputs_and_missing_paths(tmp_path: Path, capsys):
    rc = cli.main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")])
    assert rc == 2 and "no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    rc = cli.main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert rc == 2 and "empty" in err and "accepted:" in err
    assert not (tmp_path / "r.html").exists()


# ----------------------------------------------------------------------------------------------
# the page


def test_page_is_self_contained_and_complete(report: Path, runs, bench_dir):
    text = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<link" not in text and "<script src" not in text and "@import" not in text
    assert text.count("data:image/png;base64,") >= 5  # curves, frontier, map, recall, by kind
    for auc in auc_strings(runs, bench_dir):
        assert auc in text
    for heading in (
        "Track 2 runs",
        "Learning curves",
        "Efficiency against effectiveness",
        "Item embeddings",
        "Track 1 retrieval",
        "Missed queries",
        "Machines",
    ):
        assert heading in text, heading
    assert "Test CPU" in text and "train.lr=0.004" in text
    assert not list(report.parent.glob(".*tmp*"))  # the temporary file was renamed into place


def test_out_is_replaced_only_when_it_is_an_earlier_report(report: Path, runs, tmp_path: Path, capsys):
    from mmctr.outputs import OutputError

    out = tmp_path / "r.html"
    assert cli.main(["report", str(runs[0]), "--out", str(out)]) == 0
    assert f"report written to {out}" in capsys.readouterr().out
    with pytest.raises(OutputError, match="--overwrite"):
        write_report([runs[0]], out)
    write_report([runs[1]], out, overwrite=True)
    assert "run_b" in out.read_text()
    other = tmp_path / "mine.html"
    other.write_text("<html>my notes</html>")
    with pytest.raises(OutputError, match="not a report"):
        write_report([runs[0]], other, overwrite=True)
    assert other.read_text() == "<html>my notes</html>"


# ----------------------------------------------------------------------------------------------
# in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH (CI installs it: apt-get install chromium)"
)
def test_page_renders_in_headless_chromium(report: Path, runs, bench_dir, tmp_path: Path):
    from PIL import Image

    url = report.resolve().as_uri()
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # the inline script ran to its end, and window.onerror caught nothing
    assert 'data-report-ok="1"' in html, "the page's script did not finish"
    assert re.search(r'<div id="js-errors"></div>', html), "a script error was logged in the page"
    assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]
    table = html[html.index('id="summary-table"') :]
    table = table[: table.index("</table>")]
    for auc in auc_strings(runs, bench_dir):
        assert auc in table

    shot = tmp_path / "shot.png"
    res = chromium(f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.01  # text and plot lines, not an empty page
