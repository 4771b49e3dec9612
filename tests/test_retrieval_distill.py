"""The distilled single-vector retriever: attention pooling, training against the late teacher (the
KL falls, the ranking agrees with the teacher's more than before), the run directory (round trip,
named errors, refused --out, nothing half-written), the retriever and the CLI on tiny data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmctr import cli
from mmctr.errors import ConfigError, DataError
from mmctr.outputs import OutputError
from mmctr.retrieval.data.types import Passages
from mmctr.retrieval.retrievers import RetrieverOptions, build_retriever
from mmctr.retrieval.trained import distill as D

SHOTS_KEPT = 2  # screenshots left in the M2KR pool: the image fallback runs, cheaply


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmctr.retrieval.data.synth import generate

    root = tmp_path_factory.mktemp("t1distill") / "data"
    generate(root, scale="tiny", seed=4, progress=False)
    return root


@pytest.fixture(scope="module")
def opts(tmp_path_factory: pytest.TempPathFactory) -> RetrieverOptions:
    return RetrieverOptions(cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")


@pytest.fixture(scope="module")
def data(tiny: Path, opts: RetrieverOptions) -> D.DistillData:
    from mmctr.retrieval.data import load_train

    teacher = build_retriever("late", opts)
    return D.teacher_data(load_train(tiny), teacher, temperature=0.02, top=8, log=lambda m: None)


@pytest.fixture(scope="module")
def trained(data: D.DistillData) -> tuple[D.SingleVectorStudent, dict]:
    torch.set_num_threads(1)
    config = D.DistillConfig(epochs=40, valid_share=0, lr=1e-2, rank=16, negatives=8, random_negatives=4)
    return D.train_student(data, config, progress=False)


def _pairwise_agreement(model: D.SingleVectorStudent, d: D.DistillData) -> float:
    """Share of each question's candidate pairs that the student orders as the teacher does."""
    cand = D.encode_all(model.candidates, d.candidates)
    qv = D.encode_all(model.queries, d.queries)
    agree, total = 0, 0
    for q in d.questions:
        s = (cand[torch.from_numpy(q.cands)] @ qv[q.query]).numpy()
        ds, dt = s[:, None] - s[None, :], q.teacher[:, None] - q.teacher[None, :]
        mask = np.triu(np.ones_like(dt, dtype=bool), 1) & (dt != 0)
        agree += int(((ds * dt) > 0)[mask].sum())
        total += int(mask.sum())
    return agree / total


# ----------------------------------------------------------------------------------------------
# the model on plain tensors


def test_attention_pool_starts_as_the_mean_and_handles_an_empty_text():
    pool = D.AttentionPool(4)
    rows = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    out = pool(rows, torch.tensor([0, 0, 2]), 3)
    assert torch.allclose(out[0], rows[:2].mean(0)) and torch.allclose(out[2], rows[2])
    assert torch.equal(out[1], torch.zeros(4))  # text 1 has no rows
    with torch.no_grad():
        pool.score.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0]))  # a sharp preference for large x[3]
    assert torch.allclose(pool(rows, torch.tensor([0, 0, 2]), 3)[0], rows[1], atol=1e-4)


def test_tokens_select_gathers_each_items_rows_in_order():
    mats = [np.full((n, 2), i, dtype=np.float32) for i, n in enumerate([2, 0, 3, 1])]
    t = D.Tokens.of(mats, 2)
    rows, segment = t.select(np.array([3, 0, 2]))
    assert rows[:, 0].tolist() == [3, 0, 0, 2, 2, 2] and segment.tolist() == [0, 1, 1, 2, 2, 2]


def test_config_errors_name_the_option():
    with pytest.raises(ConfigError, match="temperature"):
        D.DistillConfig(temperature=0)
    with pytest.raises(ConfigError, match="teacher"):
        D.DistillConfig(teacher="dense")
    with pytest.raises(ConfigError, match="valid_share"):
        D.DistillConfig(valid_share=1)


# ----------------------------------------------------------------------------------------------
# training on the teacher's scores of the tiny train split


def test_teacher_data_covers_both_tasks(data: D.DistillData):
    kinds = {q.kind for q in data.questions}
    assert kinds == {"mmdocir", "m2kr"} and data.counts["m2kr_image_only"] > 0
    for q in data.questions:
        assert len(q.cands) == len(q.teacher) == len(q.gold) and np.isfinite(q.teacher).all()
        if q.kind == "m2kr":  # the teacher's best passages of the pool are among the candidates
            assert set(np.argsort(-q.pool)[:3] + data.passages[0]) <= set(q.cands.tolist())


def test_training_lowers_the_kl_to_the_teacher(data, trained):
    model, summary = trained
    every = list(range(len(data.questions)))
    untrained = D.SingleVectorStudent(model.config)
    before, after = D.evaluate(untrained, data, every), D.evaluate(model, data, every)
    assert after["kl"] < 0.8 * before["kl"], (before, after)
    kls = [h["kl"] for h in summary["history"][1:]]
    assert kls[-1] < kls[0]


def test_student_ranks_more_like_the_teacher_after_training(data, trained):
    model, _ = trained
    before = _pairwise_agreement(D.SingleVectorStudent(model.config), data)
    after = _pairwise_agreement(model, data)
    # the pairs the student orders against the teacher: at least a fifth fewer
    assert 1 - after < 0.8 * (1 - before), (before, after)


def test_held_out_share_and_early_stopping_keep_the_best_epoch(data):
    config = D.DistillConfig(epochs=4, valid_share=0.3, patience=10, rank=8, negatives=8, random_negatives=2)
    _, summary = D.train_student(data, config, progress=False)
    held = [h["held_out"]["kl"] for h in summary["history"]]
    assert summary["held_out_questions"] == round(0.3 * len(data.questions))
    assert summary["held_out_best"]["kl"] == pytest.approx(min(held[1:]))


# ----------------------------------------------------------------------------------------------
# the run directory


def test_run_round_trip_gives_the_same_scores(data, trained, tmp_path: Path):
    model, summary = trained
    out = tmp_path / "run"
    D.save_run(out, model, {"teacher": "late", "retriever_options": {}}, summary)
    loaded, info = D.load_student(out)
    assert info["kind"] == D.KIND
    for tower in ("candidates", "queries"):
        tokens = data.candidates if tower == "candidates" else data.queries
        a = D.encode_all(getattr(model, tower), tokens)
        b = D.encode_all(getattr(loaded, tower), tokens)
        assert torch.equal(a, b), tower


def test_missing_or_foreign_runs_are_named(trained, tmp_path: Path):
    with pytest.raises(ConfigError, match="--run"):
        build_retriever("distilled")
    with pytest.raises(DataError, match="not found"):
        D.load_student(tmp_path / "nowhere")
    foreign = tmp_path / "two_tower"
    foreign.mkdir()
    (foreign / D.RUN_FILE).write_text(json.dumps({"kind": "mmctr retrieval two-tower"}))
    with pytest.raises(ConfigError, match="retrieval distill"):
        build_retriever("distilled", RetrieverOptions(run=foreign))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / D.RUN_FILE).write_text(json.dumps({"kind": D.KIND}))
    with pytest.raises(DataError, match="config.json"):
        D.load_student(partial)
    (partial / "config.json").write_text(json.dumps({"dim": 384, "typo": 1}))
    (partial / "model.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="typo"):
        D.load_student(partial)


def test_existing_out_is_refused_and_a_failed_write_leaves_nothing(trained, tmp_path: Path, monkeypatch):
    model, summary = trained
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="already exists"):
        D.save_run(mine, model, {}, summary)
    with pytest.raises(OutputError, match="not a distilled retrieval run"):
        D.save_run(mine, model, {}, summary, overwrite=True)
    assert (mine / "keep.txt").read_text() == "mine"

    def broken(tmp, *args, **kwargs):
        assert (tmp / "model.safetensors").exists()  # every file written, the rename not yet made
        raise OSError("disk full")

    import mmctr.retrieval.trained.train as two_tower  # the run writer both trainers share

    monkeypatch.setattr(two_tower, "move_into_place", broken)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="disk full"):
        D.save_run(out, model, {}, summary)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]  # no run, no temporary directory


# ----------------------------------------------------------------------------------------------
# the retriever and the command line


@pytest.fixture(scope="module")
def run(tiny: Path, opts: RetrieverOptions, data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("t1distill_run") / "run"
    argv = ["retrieval", "distill", "--data", str(tiny), "--out", str(out), "--epochs", "2"]
    argv += ["--cache-dir", str(opts.cache_dir), "--no-progress", "--rank", "8"]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 2  # an existing --out is refused
    return out


def test_cli_writes_a_whole_run(run: Path):
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.json", "metrics.json", "model.safetensors", D.RUN_FILE]
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_seconds"] > 0 and metrics["questions"]["mmdocir"] > 0
    info = json.loads((run / D.RUN_FILE).read_text())
    assert info["teacher"] == "late" and info["retriever_options"]["text_encoder"] == "minilm"
    assert not [p for p in run.parent.iterdir() if p.name != "run"]  # no temporary leftovers


def test_retriever_ranks_the_right_candidates_and_falls_back_for_image_only(run: Path, tiny: Path, opts):
    from mmctr.retrieval.data import load

    test = load(tiny)
    docs = test.docs
    p = test.passages.passages
    shots = [s if i < SHOTS_KEPT else None for i, s in enumerate(p.screenshot)]
    passages = dataclasses.replace(test.passages, passages=Passages(p.passage_id, p.text, shots))
    r = build_retriever("distilled", dataclasses.replace(opts, run=run))
    ranked = r.rank_docs(docs, 3)
    rows = docs.pages.rows_of()
    for q in docs.questions:
        own = {docs.pages.page_id[i] for i in rows[q.doc_name]}
        assert set(ranked[q.question_id]) <= own and len(set(ranked[q.question_id])) == min(3, len(own))
    assert r.timings["index_bytes"] == len(docs.pages) * 384 * 4  # one float32 vector per page
    assert len(r.timings["encode_ms"]) == len(r.timings["search_ms"]) == len(docs.questions)
    rp = r.rank_passages(passages, 3)
    pool = set(p.passage_id)
    assert set(rp) == {q.question_id for q in passages.queries}
    assert all(len(v) == 3 and set(v) <= pool for v in rp.values())
    image_only = sum(1 for q in passages.queries if not q.question)
    assert r.timings["fallback"].startswith(f"image-only queries ({image_only} of {len(passages.queries)})")
    again = build_retriever("distilled", dataclasses.replace(opts, run=run)).rank_docs(docs, 3)
    assert again == ranked


def test_bench_takes_the_run_for_the_retriever_that_reads_it(run: Path):
    from mmctr.bench.retrieval import resolve_retrievers

    default = resolve_retrievers(None, run)
    assert "distilled" in default and "trained" not in default and "hybrid_trained" not in default
    assert "distilled" not in resolve_retrievers(None, None)
    with pytest.raises(ConfigError, match="retrieval distill"):
        resolve_retrievers(["distilled"], None)
