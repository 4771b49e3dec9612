"""`mmctr retrieval` end to end on tiny generated data: synth -> predict -> score, and demo."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from mmctr import cli
from mmctr.commands import retrieval as cmd


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch):
    # The lead registers the command in cli.COMMANDS; until then, add it here.
    if "retrieval" not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "retrieval"))


def mmctr(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["retrieval", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmctr.retrieval.data.synth import generate

    root = tmp_path_factory.mktemp("t1") / "data"
    generate(root, scale="tiny", seed=0, progress=False)
    return root


def test_every_option_has_help_and_scales_agree():
    from mmctr.retrieval.data.synth import SCALES

    assert tuple(SCALES) == cmd.SCALES
    parser = argparse.ArgumentParser()
    p = cmd.add_parser(parser.add_subparsers())
    subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {
        "synth",
        "retrievers",
        "train",
        "distill",
        "predict",
        "score",
        "demo",
        "index",
        "search",
    }
    for name, sp in subs.choices.items():
        assert sp.description, name
        for action in sp._actions:
            assert action.help, f"{name} {action.option_strings} has no help"


def test_synth_prints_a_short_summary(tmp_path: Path, capsys):
    rc, out, _ = mmctr(capsys, "synth", "--scale", "tiny", "--out", tmp_path / "d", "--no-progress")
    assert rc == 0
    assert (tmp_path / "d" / "truth").is_dir()
    lines = out.strip().splitlines()
    assert 2 <= len(lines) <= 8 and "MMDocIR" in out and "M2KR" in out and "{" not in out
    rc, _, err = mmctr(capsys, "synth", "--scale", "tiny", "--out", tmp_path / "d", "--no-progress")
    assert rc == 2 and "already exists" in err


def test_retrievers_lists_the_registry(capsys):
    from mmctr.retrieval.retrievers import RETRIEVERS

    rc, out, _ = mmctr(capsys, "retrievers")
    assert rc == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert names == list(RETRIEVERS) and "bm25" in names


def test_predict_then_score(tiny: Path, tmp_path: Path, capsys):
    sub = tmp_path / "sub.csv"
    rc, out, err = mmctr(capsys, "predict", "--data", tiny, "--retriever", "bm25", "--out", sub, "--no-cache")
    assert rc == 0, err
    assert "MMDocIR" in out and "M2KR" in out and f"wrote {sub}" in out

    from mmctr.retrieval.data import load_truth
    from mmctr.retrieval.submission import read_submission

    truth = load_truth(tiny / "truth")
    rows = read_submission(sub, "final")
    assert set(rows) == set(truth.mmdocir) | set(truth.m2kr)

    rc, out, err = mmctr(capsys, "score", "--pred", sub, "--truth", tiny / "truth", "--data", tiny, "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert {"mmdocir", "m2kr", "overall"} <= set(result)
    for task in ("mmdocir", "m2kr"):
        m = result[task]
        assert m["questions"] == len(getattr(truth, task))
        assert 0.0 <= m["R@1"] <= m["R@3"] <= m["R@5"] <= 1.0
        assert m["score"] == pytest.approx((m["R@1"] + m["R@3"] + m["R@5"]) / 3)
    assert result["overall"]["score"] == pytest.approx(
        (result["mmdocir"]["score"] + result["m2kr"]["score"]) / 2
    )
    assert result["overall"]["unknown_ids"] == 0  # bm25 only lists candidates
    assert result["mmdocir"]["score"] > 0  # text matching finds some pages

    rc, out, _ = mmctr(capsys, "score", "--pred", sub, "--truth", tiny / "truth")
    assert rc == 0 and "MMDocIR" in out and "M2KR" in out and "overall" in out
    if truth.kind:
        assert any(k in out for k in set(truth.kind.values()))

    # Under the draft rules a 5-id file is refused, naming the file and line.
    rc, _, err = mmctr(capsys, "score", "--pred", sub, "--truth", tiny / "truth", "--rules", "draft")
    assert rc == 2 and f"{sub}, line 2" in err and "draft rules take exactly 10" in err


def test_perfect_submission_scores_one(tiny: Path, tmp_path: Path, capsys):
    """The scorer against answers taken from the truth itself: hit rates and nDCG@5 are 1, and
    MMDocIR's fractional R@k is min(k, |gold|) / |gold| per question."""
    from mmctr.retrieval.data import load_truth
    from mmctr.retrieval.submission import write_submission

    truth = load_truth(tiny / "truth")
    sub = write_submission({**truth.mmdocir, **truth.m2kr}, tmp_path / "perfect.csv")
    rc, out, _ = mmctr(capsys, "score", "--pred", sub, "--truth", tiny / "truth", "--json")
    assert rc == 0
    result = json.loads(out)
    assert result["m2kr"]["R@1"] == result["m2kr"]["score"] == 1.0
    assert result["m2kr"]["nDCG@5"] == result["mmdocir"]["nDCG@5"] == pytest.approx(1.0)
    gold = list(truth.mmdocir.values())
    for k in (1, 3, 5):
        want = sum(min(k, len(g)) / len(g) for g in gold) / len(gold)
        assert result["mmdocir"][f"R@{k}"] == pytest.approx(want)


def test_existing_out_refused(tiny: Path, tmp_path: Path, capsys):
    mine = tmp_path / "notes.csv"
    mine.write_text("my,own\n")
    rc, _, err = mmctr(capsys, "predict", "--data", tiny, "--retriever", "bm25", "--out", mine)
    assert rc == 2 and "already exists" in err
    rc, _, err = mmctr(capsys, "predict", "--data", tiny, "--retriever", "bm25", "--out", mine, "--overwrite")
    assert rc == 2 and "is not a submission CSV" in err
    assert mine.read_text() == "my,own\n"
    rc, _, err = mmctr(capsys, "predict", "--data", tiny, "--retriever", "nope", "--out", tmp_path / "x.csv")
    assert rc == 2 and "unknown retriever 'nope'" in err and "bm25" in err
    rc, _, err = mmctr(
        capsys, "predict", "--data", tiny, "--retriever", "bm25", "--out", tmp_path / "x.csv", "-k", "6"
    )
    assert rc == 2 and "-k 6: must be 1..5" in err
    assert not (tmp_path / "x.csv").exists()


def test_demo_reuses_its_data(tmp_path: Path, capsys):
    args = ("demo", "--out", tmp_path / "demo", "--scale", "tiny", "--retriever", "bm25", "--no-cache")
    rc, out, err = mmctr(capsys, *args)
    assert rc == 0, err
    summary = json.loads((tmp_path / "demo" / cmd.DEMO_SUMMARY).read_text())
    assert {"mmdocir", "m2kr", "overall"} <= set(summary["scores"])
    rc, out, err = mmctr(capsys, *args)
    assert rc == 0, err
    assert "already there; reusing it" in out
    assert json.loads((tmp_path / "demo" / cmd.DEMO_SUMMARY).read_text())["scores"] == summary["scores"]


def test_score_against_gold_in_the_data_files(tiny: Path, tmp_path: Path, capsys):
    """train/ carries its gold in the data files (as ViDoRe does): --truth may name such a root."""
    sub = tmp_path / "train.csv"
    rc, _, err = mmctr(capsys, "predict", "--data", tiny / "train", "--retriever", "random", "--out", sub)
    assert rc == 0, err
    rc, out, err = mmctr(capsys, "score", "--pred", sub, "--truth", tiny / "train", "--json")
    assert rc == 0, err
    result = json.loads(out)
    from mmctr.retrieval.data import load_train

    train = load_train(tiny)
    assert result["mmdocir"]["questions"] == len(train.docs.gold)
    assert result["m2kr"]["questions"] == len(train.passages.gold)
    assert result["mmdocir"]["by_kind"] == {}  # the page files carry no question kinds
    # The test split's files carry no gold: the error says where the answers would be.
    rc, _, err = mmctr(capsys, "score", "--pred", sub, "--truth", tiny / "MMDocIR")
    assert rc == 2 and "gold.jsonl: file not found" in err


def test_ids_that_are_not_candidates_are_counted(tiny: Path, tmp_path: Path, capsys):
    from mmctr.retrieval.data import load_truth
    from mmctr.retrieval.submission import write_submission

    truth = load_truth(tiny / "truth")
    ranked = {**truth.mmdocir, **truth.m2kr}
    first = next(iter(truth.m2kr))
    ranked[first] = ["no_such_passage", *ranked[first]]
    sub = write_submission(ranked, tmp_path / "odd.csv")
    rc, out, _ = mmctr(capsys, "score", "--pred", sub, "--truth", tiny / "truth", "--data", tiny)
    assert rc == 0
    assert "note: 1 listed ids in 1 rows are not candidates" in out


def test_draft_rules_end_to_end(tiny: Path, tmp_path: Path, capsys):
    sub = tmp_path / "draft.csv"
    rc, _, err = mmctr(
        capsys, "predict", "--data", tiny, "--retriever", "bm25", "--out", sub, "--rules", "draft"
    )
    assert rc == 0, err
    from mmctr.retrieval.submission import read_submission

    assert {len(ids) for ids in read_submission(sub, "draft").values()} == {10}
    rc, out, err = mmctr(
        capsys, "score", "--pred", sub, "--truth", tiny / "truth", "--rules", "draft", "--json"
    )
    assert rc == 0, err
    result = json.loads(out)
    assert result["overall"]["rules"] == "draft" and result["overall"]["ks"] == [1, 5, 10]
    m = result["m2kr"]
    assert m["score"] == pytest.approx((m["R@1"] + m["R@5"] + m["R@10"]) / 3)
