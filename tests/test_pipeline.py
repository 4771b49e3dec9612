"""The commands end to end on tiny data: train → predict → score, as a user runs them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmctr.cli import main
from mmctr.config import resolve_run_config
from mmctr.errors import ConfigError
from mmctr.training.run_dir import load_run


def _fast_config(tmp_path: Path, **train) -> Path:
    cfg = {"train": {"epochs": 2, "batch_size": 512, **train}}
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_predict_score(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    run = tmp_path / "run"
    rc = main(
        [
            "train",
            "--data",
            str(tiny_data),
            "--model",
            "din",
            "--config",
            str(_fast_config(tmp_path)),
            "--out",
            str(run),
            "--no-progress",
        ]
    )
    assert rc == 0
    for name in ("config.yaml", "model.safetensors", "items.safetensors", "metrics.json", "run.json"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 < metrics["valid_auc"] < 1.0 and metrics["valid_logloss"] > 0
    assert 0.5 < metrics["oracle_valid_auc"] < 1.0  # the generator's truth is reported
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["model_params"]["dnn_hidden"] == [1024, 512, 256]

    zip_path = tmp_path / "sub.zip"
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                "--data",
                str(tiny_data),
                "--track",
                "Task2",
                "--out",
                str(zip_path),
            ]
        )
        == 0
    )
    n_test = len((tiny_data / "truth" / "test_labels.csv").read_text().splitlines()) - 1
    with zipfile.ZipFile(zip_path) as zf:
        lines = zf.read("prediction.csv").decode().splitlines()
    assert lines[0] == "ID,Task2" and len(lines) == n_test + 1
    assert [int(ln.split(",")[0]) for ln in lines[1:]] == list(range(n_test))

    capsys.readouterr()
    assert (
        main(
            [
                "score",
                "--pred",
                str(zip_path),
                "--truth",
                str(tiny_data / "truth" / "test_labels.csv"),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert 0.0 < out["auc"] < 1.0


def test_run_reloads_with_identical_predictions(tiny_data: Path, tmp_path: Path):
    from mmctr.data.reader import load_dataset
    from mmctr.training.loop import predict_split, train_and_save

    cfg = resolve_run_config("din", _fast_config(tmp_path, epochs=1))
    data = load_dataset(tiny_data, max_len=cfg.train.max_len, splits=("train", "valid"))
    result = train_and_save(cfg, data, tmp_path / "run", progress=False, log=lambda *_: None)
    _, model, facts = load_run(tmp_path / "run")
    assert facts["n_items"] == data.items.n_items
    a = predict_split(result.model, data["valid"])
    b = predict_split(model, data["valid"])
    assert np.array_equal(a, b)


def test_same_seed_same_result(tiny_data: Path, tmp_path: Path):
    from mmctr.data.reader import load_dataset
    from mmctr.training.loop import train

    cfg = resolve_run_config("din", _fast_config(tmp_path, epochs=1, max_steps=3))
    data = load_dataset(tiny_data, max_len=cfg.train.max_len, splits=("train", "valid"))
    a = train(cfg, data, progress=False, log=lambda *_: None).metrics["valid_auc"]
    b = train(cfg, data, progress=False, log=lambda *_: None).metrics["valid_auc"]
    assert a == b


def test_config_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rate'"):
        resolve_run_config("din", bad)
    bad.write_text("model_params:\n  embeding_dim: 8\n")
    with pytest.raises(ConfigError, match=r"unknown key 'embeding_dim'"):
        resolve_run_config("din", bad)
    bad.write_text("train:\n  batch_size: lots\n")
    with pytest.raises(ConfigError, match=r"train.batch_size: expected an integer"):
        resolve_run_config("din", bad)
    with pytest.raises(ConfigError, match=r"unknown model 'dinn'"):
        resolve_run_config("dinn")


def test_cli_error_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture):
    rc = main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "data root not found" in err
    assert not (tmp_path / "run").exists()
