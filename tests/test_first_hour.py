"""A user's first hour: no command deletes what it did not create, and the frictions a newcomer
met are gone. Each test here failed before its fix."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmctr.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _fast_config(tmp_path: Path) -> Path:
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 1, "batch_size": 512}}))
    return path


def _train(data: Path, out: Path, cfg: Path, *extra: str) -> int:
    return main(
        ["train", "--data", str(data), "--config", str(cfg), "--out", str(out), "--no-progress", *extra]
    )


def _users_folder(path: Path) -> Path:
    """A folder holding a user's own files (three earlier runs of theirs, a note)."""
    path.mkdir(parents=True)
    for i in range(3):
        (path / f"run{i}").mkdir()
        (path / f"run{i}" / "weights.bin").write_bytes(b"precious")
    (path / "notes.txt").write_text("mine")
    return path


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------
# Data loss: every command that writes


@pytest.fixture(scope="module")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("first_hour")
    run = tmp / "run"
    assert _train(tiny_data, run, _fast_config(tmp)) == 0
    return run


def test_train_refuses_a_folder_of_the_users(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = _users_folder(tmp_path / "runs")
    before = _snapshot(folder)
    cfg = _fast_config(tmp_path)
    assert _train(tiny_data, folder, cfg) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _train(tiny_data, folder, cfg, "--overwrite") == 2  # not a run directory: never replaced
    assert "will not replace it" in capsys.readouterr().err
    assert _snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.yaml", "runs"], "no temp dirs left"


def test_train_never_replaces_the_working_directory(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(_users_folder(tmp_path / "work"))
    before = _snapshot(Path.cwd())
    cfg = _fast_config(tmp_path)
    for out in (".", str(tmp_path)):
        assert _train(tiny_data, Path(out), cfg, "--overwrite") == 2
        assert "working directory" in capsys.readouterr().err
    assert _snapshot(Path.cwd()) == before


def test_train_overwrite_replaces_only_a_run(trained_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cfg = _fast_config(tmp_path)
    assert _train(tiny_data, run, cfg) == 2  # exists: refused without --overwrite
    assert _train(tiny_data, run, cfg, "--overwrite", "--seed", "7") == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == 7


def test_synth_refuses_a_folder_of_the_users(tmp_path: Path) -> None:
    folder = _users_folder(tmp_path / "d")
    before = _snapshot(folder)
    for extra in ([], ["--overwrite"]):
        rc = main(["synth", "--scale", "tiny", "--no-images", "--out", str(folder), *extra])
        assert rc == 2
    assert _snapshot(folder) == before


def test_embed_refuses_a_file_of_the_users(tiny_data: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.parquet"
    mine.write_bytes(b"not an item_info")
    args = ["embed", "--data", str(tiny_data), "--out", str(mine), "--fusion", "random", "--no-progress"]
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 2
    assert mine.read_bytes() == b"not an item_info"


def test_predict_refuses_and_overwrites_only_a_submission(
    trained_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "report.zip"
    with zipfile.ZipFile(mine, "w") as zf:
        zf.writestr("report.txt", "mine")
    before = mine.read_bytes()
    args = ["predict", "--run", str(trained_run), "--data", str(tiny_data), "--out", str(mine)]
    assert main(args) == 2 and main([*args, "--overwrite"]) == 2
    assert mine.read_bytes() == before
    sub = tmp_path / "sub.zip"
    args = ["predict", "--run", str(trained_run), "--data", str(tiny_data), "--out", str(sub)]
    assert main(args) == 0
    assert main(args) == 2 and main([*args, "--overwrite"]) == 0


def test_bench_refuses_a_folder_of_the_users(tiny_data: Path, tmp_path: Path) -> None:
    folder = _users_folder(tmp_path / "b")
    before = _snapshot(folder)
    for extra in ([], ["--overwrite"]):
        assert main(["bench", "--data", str(tiny_data), "--out", str(folder), "--peers", *extra]) == 2
    assert _snapshot(folder) == before


def test_demo_refuses_a_folder_of_the_users(tmp_path: Path) -> None:
    folder = _users_folder(tmp_path / "demo")
    before = _snapshot(folder)
    assert main(["demo", "--scale", "tiny", "--out", str(folder), "--no-progress"]) == 2
    assert _snapshot(folder) == before


# ------------------------------------------------------------------------------------------------
# Frictions


def test_train_batch_size_and_few_steps_warning(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    rc = main(["train", "--data", str(tiny_data), "--epochs", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "only 1 optimizer step" in err and "--batch-size" in err
    out2 = tmp_path / "run2"
    rc = main(
        ["train", "--data", str(tiny_data), "--epochs", "1", "--batch-size", "128"]
        + ["--out", str(out2), "--no-progress"]
    )
    assert rc == 0 and "optimizer step" not in capsys.readouterr().err
    assert yaml.safe_load((out2 / "config.yaml").read_text())["train"]["batch_size"] == 128


def test_readme_says_how_to_run_mmctr_after_make() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("## ")]  # before the first section
    assert ".venv/bin/mmctr" in head and "source .venv/bin/activate" in head


@pytest.mark.parametrize(
    "case, message",
    [
        ("truth_dir", "is a directory"),
        ("truth_parquet", "is a parquet file"),
        ("pred_parquet", "is a parquet file"),
        ("swapped", "did you swap --pred and --truth"),
    ],
)
def test_score_names_natural_mistakes(
    case: str, message: str, trained_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sub = tmp_path / "sub.zip"
    assert main(["predict", "--run", str(trained_run), "--data", str(tiny_data), "--out", str(sub)]) == 0
    truth = tiny_data / "truth" / "test_labels.csv"
    parquet = tiny_data / "MicroLens_1M_x1" / "test.parquet"
    pred, tru = {
        "truth_dir": (sub, truth.parent),
        "truth_parquet": (sub, parquet),
        "pred_parquet": (parquet, truth),
        "swapped": (truth, sub),
    }[case]
    capsys.readouterr()
    assert main(["score", "--pred", str(pred), "--truth", str(tru)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_predict_refuses_a_run_of_another_data_set(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from mmctr.data.synth import generate
    from mmctr.data.synth.config import SCALES

    other = tmp_path / "other"
    generate(other, scale="tiny", seed=5, images=False, progress=False)
    facts = json.loads((trained_run / "run.json").read_text())
    assert facts["data_fingerprint"], "the run records which data set it was trained on"
    out = tmp_path / "p.zip"
    # Same size, other items: predictions are written, with a warning.
    assert main(["predict", "--run", str(trained_run), "--data", str(other), "--out", str(out)]) == 0
    assert "differs from the item_info" in capsys.readouterr().err
    # Another item count: refused.
    bigger = tmp_path / "bigger"
    import dataclasses

    import mmctr.data.synth.config as C

    size = dataclasses.replace(SCALES["tiny"], n_items=SCALES["tiny"].n_items + 50)
    orig = dict(C.SCALES)
    try:
        C.SCALES["tinier"] = size
        generate(bigger, scale="tinier", seed=5, images=False, progress=False)
    finally:
        C.SCALES.clear()
        C.SCALES.update(orig)
    out2 = tmp_path / "p2.zip"
    assert main(["predict", "--run", str(trained_run), "--data", str(bigger), "--out", str(out2)]) == 2
    assert "another data set" in capsys.readouterr().err and not out2.exists()


def test_train_refuses_item_info_of_another_data_set(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # An item_info with more items than this data root has was accepted silently (every id fits).
    t = pq.read_table(tiny_data / "MicroLens_1M_x1" / "item_info.parquet")
    extra = t.slice(1, 20).set_column(0, "item_id", pa.array(np.arange(t.num_rows, t.num_rows + 20)))
    longer = tmp_path / "longer.parquet"
    pq.write_table(pa.concat_tables([t, extra]), longer)
    rc = _train(tiny_data, tmp_path / "run", _fast_config(tmp_path), "--item-info", str(longer))
    assert rc == 2 and "another data set" in capsys.readouterr().err
    # Same size, other tags: trained, with a warning.
    tags = t.column("item_tags").to_pylist()
    shuffled = t.set_column(
        1, "item_tags", pa.array(tags[:1] + tags[:0:-1], t.schema.field("item_tags").type)
    )
    other = tmp_path / "other.parquet"
    pq.write_table(shuffled, other)
    rc = _train(tiny_data, tmp_path / "run2", _fast_config(tmp_path), "--item-info", str(other))
    assert rc == 0 and "item_tags differ" in capsys.readouterr().err


def test_data_pointed_at_the_inner_folder_gets_a_hint(tiny_data: Path, capsys: pytest.CaptureFixture) -> None:
    inner = tiny_data / "MicroLens_1M_x1"
    assert main(["train", "--data", str(inner), "--out", "/nonexistent/run"]) == 2
    assert f"did you mean its parent, --data {tiny_data}" in capsys.readouterr().err


def test_help_describes_every_command_and_option(capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices)[:12] == [
        "demo",
        "synth",
        "data",
        "embed",
        "train",
        "distill",
        "prune",
        "quantize",
        "predict",
        "score",
        "models",
        "bench",
    ]
    for name, p in sub.choices.items():
        assert p.description, f"`mmctr {name}` has no description"
        for action in p._actions:
            if action.dest in ("help",) or action.help == "==SUPPRESS==":
                continue
            if isinstance(action, type(sub)):  # nested subcommands describe themselves
                continue
            assert action.help, f"`mmctr {name} {action.option_strings}` has no help"
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.match(r"mmctr \d+\.\d+", capsys.readouterr().out)
    assert set(COMMANDS) >= set(sub.choices)


def test_bench_md_states_the_real_batch() -> None:
    from mmctr.bench.report import _batch_words

    assert _batch_words({"batch_size": 8192}, {"train_rows": 2000}).startswith("batch 2,000 (all train rows")
    assert _batch_words({"batch_size": 8192}, {"train_rows": 1_200_000}) == "batch 8,192"


def test_synth_prints_a_short_summary_and_survives_a_closed_pipe(tmp_path: Path) -> None:
    out = tmp_path / "d"
    cmd = [sys.executable, "-m", "mmctr.cli", "synth", "--scale", "tiny", "--no-images", "--out", str(out)]
    full = subprocess.run(cmd, capture_output=True, text=True, check=True)
    summary = [ln for ln in full.stdout.splitlines() if not ln.startswith("synth ")]
    assert len(summary) <= 6, summary
    piped = subprocess.run(
        f"{' '.join(cmd[:-1])} {tmp_path / 'e'} | head -1", shell=True, capture_output=True, text=True
    )
    assert "Traceback" not in piped.stderr and "BrokenPipeError" not in piped.stderr


def test_predict_out_csv_writes_a_csv(trained_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "prediction.csv"
    assert main(["predict", "--run", str(trained_run), "--data", str(tiny_data), "--out", str(out)]) == 0
    assert not zipfile.is_zipfile(out) and out.read_text().startswith("ID,Task2\n")
    assert (
        main(
            ["predict", "--run", str(trained_run), "--data", str(tiny_data), "--out", str(tmp_path / "x.txt")]
        )
        == 2
    )


def test_score_shows_the_oracle(
    trained_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sub = tmp_path / "sub.zip"
    assert main(["predict", "--run", str(trained_run), "--data", str(tiny_data), "--out", str(sub)]) == 0
    truth = tiny_data / "truth" / "test_labels.csv"
    capsys.readouterr()
    assert main(["score", "--pred", str(sub), "--truth", str(truth)]) == 0
    assert "oracle AUC" in capsys.readouterr().out
    assert main(["score", "--pred", str(sub), "--truth", str(truth), "--json"]) == 0
    world = json.loads((tiny_data / "truth" / "world.json").read_text())
    assert json.loads(capsys.readouterr().out)["oracle_auc"] == pytest.approx(
        world["oracle_test_auc"], abs=1e-4
    )


@pytest.mark.parametrize(
    "doc",
    ["README.md", "BENCHMARKS.md", *sorted(p.name for p in (ROOT / "docs" / "benchmarks").glob("*.md"))],
)
def test_docs_have_no_work_notes(doc: str) -> None:
    path = ROOT / doc if (ROOT / doc).exists() else ROOT / "docs" / "benchmarks" / doc
    text = path.read_text()
    assert not re.search(r"/tmp/|/work/|pytest-of-", text), "temporary paths mean nothing to a reader"
    assert not re.search(r"\b[Ss]ession[ -]?\d", text), "numbered work periods mean nothing to a reader"


def test_license_file_and_spdx_license() -> None:
    import tomllib

    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT", "an SPDX string: the table form is deprecated"


def test_every_model_declares_its_embedding_tables() -> None:
    from torch import nn

    from mmctr.models import MODELS, check_contract

    for name, cls in MODELS.items():
        check_contract(name, cls)

    class NoTables(nn.Module):
        config_class = dict

        def forward(self, batch):  # pragma: no cover - never called
            return batch

    with pytest.raises(TypeError, match="embedding_tables"):
        check_contract("no_tables", NoTables)


def test_embedding_reg_reaches_every_model() -> None:
    """The regulariser changes the loss of every model (it was skipped silently where a model
    lacked the method)."""
    import dataclasses

    import torch

    from helpers import random_items
    from mmctr.config import resolve_run_config
    from mmctr.data.batches import Batch
    from mmctr.models import MODELS
    from mmctr.training.loop import loss_fn
    from mmctr.training.run_dir import build_model

    items = random_items(30)
    rng = np.random.default_rng(0)
    batch = Batch(
        hist=torch.tensor(rng.integers(0, 30, (4, 8))),
        item_id=torch.tensor(rng.integers(1, 30, 4)),
        likes=torch.tensor(rng.integers(0, 11, 4)),
        views=torch.tensor(rng.integers(0, 11, 4)),
        user_id=torch.tensor(rng.integers(1, 5, 4)),
        label=torch.tensor([1.0, 0.0, 1.0, 0.0]),
    )
    for name in MODELS:
        cfg = resolve_run_config(name, None, {})
        model = build_model(cfg, items)
        if not model.embedding_tables():
            assert name in ("pop", "pop_user"), f"{name} names no embedding table"  # counts only
            continue
        with torch.no_grad():  # lr starts at zero weights: give the tables something to penalise
            for t in model.embedding_tables():
                t.weight.add_(0.01)
        logits = torch.zeros(4)
        plain = loss_fn(model, logits, batch, dataclasses.replace(cfg.train, embedding_reg=0.0))
        reg = loss_fn(model, logits, batch, dataclasses.replace(cfg.train, embedding_reg=0.1))
        assert reg > plain, name


def test_demo_runs_and_reruns_in_its_own_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    args = [
        "demo",
        "--scale",
        "tiny",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--no-progress",
    ]
    assert main(args) == 0
    first = json.loads((out / "demo_summary.json").read_text())
    assert 0.5 < first["oracle_test_auc"] <= 1 and 0 < first["test_auc"] < 1
    assert main(args) == 0  # a rerun reuses the data and replaces its own run and zip
    assert "already there; reusing it" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "data_tiny_seed0",
        "demo_summary.json",
        "report.html",
        "run_din",
        "submission_Task2.zip",
    ]
