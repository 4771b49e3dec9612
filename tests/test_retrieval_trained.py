"""The trained two-tower retriever: the model's score, training, the run directory, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmctr import cli
from mmctr.errors import ConfigError, DataError
from mmctr.retrieval.data import load, load_train
from mmctr.retrieval.retrievers import RetrieverOptions, build_retriever
from mmctr.retrieval.trained.features import FIELDS, doc_features, passage_features
from mmctr.retrieval.trained.model import TwoTower, TwoTowerConfig
from mmctr.retrieval.trained.train import DocScorer, TrainConfig, load_run, train_model, train_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmctr.retrieval.data.synth import generate

    root = tmp_path_factory.mktemp("t1trained") / "data"
    generate(root, scale="tiny", seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("t1cache")


@pytest.fixture(scope="module")
def features(tiny: Path, cache: Path):
    opts = RetrieverOptions(cache_dir=cache)
    data = load_train(tiny)
    return doc_features(data.docs, opts), passage_features(data.passages, opts)


@pytest.fixture(scope="module")
def run(tiny: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("t1run") / "run"
    train_run(
        [tiny],
        out,
        RetrieverOptions(cache_dir=cache),
        TrainConfig(epochs=3),
        progress=False,
        log=lambda m: None,
    )
    return out


def test_untrained_model_is_the_plain_sum_of_the_fields(features):
    df, _ = features
    model = TwoTower(TwoTowerConfig(text_dim=df.q_text.shape[1])).eval()
    s = DocScorer(model, df).scores(0)
    c = df.cands[0]
    q = df.q_text[0]
    expected = df.pages_vlm[c] @ q + df.pages_ocr[c] @ q + df.sparse_vlm[0] + df.sparse_ocr[0]
    np.testing.assert_allclose(s, expected, rtol=1e-4, atol=1e-4)


def test_training_lowers_the_loss_and_keeps_the_best_epoch(features):
    df, pf = features
    model, summary = train_model(df, pf, TrainConfig(epochs=4, patience=10, valid_share=0.25), progress=False)
    losses = [h["loss"] for h in summary["history"][1:]]
    assert losses[-1] < losses[0]
    best = max(h["held_out"]["overall"] for h in summary["history"])
    assert summary["held_out_best"] == pytest.approx(best)
    assert set(summary["field_weights_mean"]) == set(FIELDS)


def test_same_seed_same_model(features):
    df, pf = features
    a, _ = train_model(df, pf, TrainConfig(epochs=2, seed=5), progress=False)
    b, _ = train_model(df, pf, TrainConfig(epochs=2, seed=5), progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_run_round_trip_and_retriever(run: Path, tiny: Path, cache: Path):
    info = json.loads((run / "retrieval_run.json").read_text())
    assert info["retriever_options"]["text_encoder"] == "minilm"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_seconds"] > 0 and metrics["best_epoch"] >= 0
    model, _ = load_run(run)
    data = load(tiny)
    r = build_retriever("trained", RetrieverOptions(run=run, cache_dir=cache))
    ranked = r.rank_docs(data.docs, 5)
    rows = data.docs.pages.rows_of()
    for q in data.docs.questions:
        own = {data.docs.pages.page_id[i] for i in rows[q.doc_name]}
        assert set(ranked[q.question_id]) <= own and len(set(ranked[q.question_id])) == min(5, len(own))
    assert len(r.timings["search_ms"]) == len(data.docs.questions) and r.timings["index_bytes"] > 0
    passages = r.rank_passages(data.passages, 3)
    pool = set(data.passages.passages.passage_id)
    assert all(len(v) == 3 and set(v) <= pool for v in passages.values())
    again = build_retriever("trained", RetrieverOptions(run=run, cache_dir=cache)).rank_passages(
        data.passages, 3
    )
    assert again == passages


def test_trained_needs_a_run_and_a_whole_one(run: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="--run"):
        build_retriever("trained")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "retrieval_run.json").write_text("{}")
    with pytest.raises(DataError, match="config.json"):
        load_run(broken)
    (broken / "config.json").write_text(json.dumps({"text_dim": 384, "typo": 1}))
    (broken / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes())
    with pytest.raises(DataError, match="typo"):
        load_run(broken)


def test_hybrid_fuses_the_trained_run(run: Path, tiny: Path, cache: Path):
    data = load(tiny)
    h = build_retriever("hybrid_trained", RetrieverOptions(run=run, cache_dir=cache))
    assert all(ws.get("trained") == 1.0 for ws in h.weights.values())
    h.rank_docs(data.docs, 5)
    assert "trained" in h.timings["components"]
    plain = build_retriever("hybrid", RetrieverOptions(run=run, cache_dir=cache))
    assert all("trained" not in ws for ws in plain.weights.values())
    with pytest.raises(ConfigError, match="--run"):
        build_retriever("hybrid_trained")


def test_cli_train_predict_score(tiny: Path, cache: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    rc = cli.main(
        [
            "retrieval",
            "train",
            "--data",
            str(tiny),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--cache-dir",
            str(cache),
            "--no-progress",
        ]
    )
    assert rc == 0 and "held-out score" in capsys.readouterr().out
    rc = cli.main(
        [
            "retrieval",
            "train",
            "--data",
            str(tiny),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--cache-dir",
            str(cache),
            "--no-progress",
        ]
    )
    assert rc == 2 and "already exists" in capsys.readouterr().err
    sub = tmp_path / "sub.csv"
    rc = cli.main(
        [
            "retrieval",
            "predict",
            "--data",
            str(tiny),
            "--run",
            str(out),
            "--out",
            str(sub),
            "--cache-dir",
            str(cache),
        ]
    )
    assert rc == 0 and sub.exists() and "wrote" in capsys.readouterr().out
    rc = cli.main(
        ["retrieval", "score", "--data", str(tiny), "--run", str(out), "--cache-dir", str(cache), "--json"]
    )
    cap = capsys.readouterr()
    assert rc == 0
    by_run = json.loads(cap.out)
    rc = cli.main(["retrieval", "score", "--pred", str(sub), "--truth", str(tiny / "truth"), "--json"])
    assert json.loads(capsys.readouterr().out)["overall"]["score"] == pytest.approx(
        by_run["overall"]["score"]
    )
    rc = cli.main(["retrieval", "score", "--run", str(out)])
    assert rc == 2 and "--data" in capsys.readouterr().err
