"""Track 1's metrics (both rule sets) and the submission CSV, on hand-made cases."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmctr.errors import ConfigError, SubmissionError
from mmctr.outputs import OutputError
from mmctr.retrieval.metrics import RULES, evaluate, evaluate_task, fractional_recall, hit, ndcg
from mmctr.retrieval.submission import (
    HEADER,
    SUBMISSION_CSV,
    check_against_truth,
    read_submission,
    write_submission,
)


def _truth(mmdocir=None, m2kr=None, kind=None):
    return SimpleNamespace(mmdocir=mmdocir or {}, m2kr=m2kr or {}, kind=kind or {})


# --- metrics -----------------------------------------------------------------------------------


def test_fractional_recall_vs_hit_on_a_two_gold_question():
    gold = {"3", "7"}
    ranking = ["3", "1", "2", "7", "9"]
    assert [fractional_recall(ranking, gold, k) for k in (1, 3, 5)] == [0.5, 0.5, 1.0]
    assert [hit(ranking, gold, k) for k in (1, 3, 5)] == [1.0, 1.0, 1.0]
    assert hit(["1", "2", "3"], gold, 2) == 0.0
    # The same ranking scored as each task: MMDocIR counts the fraction, M2KR the hit.
    doc = evaluate_task({"q": ranking}, {"q": ["3", "7"]}, "fractional", "final")
    pas = evaluate_task({"q": ranking}, {"q": ["3", "7"]}, "hit", "final")
    assert (doc["R@1"], doc["R@3"], doc["R@5"]) == (0.5, 0.5, 1.0)
    assert doc["score"] == pytest.approx(2 / 3)
    assert (pas["R@1"], pas["R@3"], pas["R@5"], pas["score"]) == (1.0, 1.0, 1.0, 1.0)


def test_ndcg_at_5_by_hand():
    # Gold at ranks 1 and 4: DCG = 1/log2(2) + 1/log2(5); ideal = 1/log2(2) + 1/log2(3).
    want = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg(["3", "1", "2", "7", "9"], {"3", "7"}) == pytest.approx(want)
    assert want == pytest.approx(0.877215, abs=1e-6)
    assert ndcg(["1", "2", "3", "4", "5", "7"], {"7"}) == 0.0  # rank 6 is past the cut
    assert ndcg(["1", "7"], {"7"}) == pytest.approx(1 / math.log2(3))
    # More gold than the cut: the ideal holds 5 gold ids.
    assert ndcg(list("abcde"), set("abcdefg")) == pytest.approx(1.0)


def test_duplicates_count_once_at_their_first_place():
    gold = ["3", "7"]
    # A padded list (top id repeated, as teams did) scores as the unpadded one.
    padded = evaluate_task({"q": ["3", "3", "3", "3", "3"]}, {"q": gold}, "fractional")
    plain = evaluate_task({"q": ["3"]}, {"q": gold}, "fractional")
    assert padded["R@5"] == plain["R@5"] == 0.5
    assert padded["nDCG@5"] == plain["nDCG@5"]
    # A repeated gold id adds nothing, however often it appears.
    assert evaluate_task({"q": ["7", "7", "7"]}, {"q": gold}, "fractional")["R@3"] == 0.5
    # A repeat is dropped, not kept as a slot: "1","1","3" ranks 3 second.
    r = evaluate_task({"q": ["1", "1", "3", "7"]}, {"q": gold}, "fractional")
    assert (r["R@1"], r["R@3"]) == (0.0, 1.0)
    assert r["nDCG@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))


def test_fewer_than_k_ids_and_missing_rankings():
    r = evaluate_task({"a": ["3"]}, {"a": ["3", "7"], "b": ["1"]}, "fractional")
    # "a" scores 0.5 at every k; "b" has no ranking and scores 0.
    assert r["R@1"] == r["R@5"] == r["R@10"] == 0.25
    assert r["questions"] == 2 and r["unranked"] == 1
    assert r["nDCG@5"] == pytest.approx((1 / (1 + 1 / math.log2(3))) / 2)
    # A question with no gold cannot be scored: counted, left out of the means.
    r = evaluate_task({"a": ["3"]}, {"a": ["3"], "z": []}, "hit")
    assert r["R@1"] == 1.0 and r["questions"] == 1 and r["no_gold"] == 1


def test_both_rule_sets():
    assert (RULES["final"].ks, RULES["final"].submit_k) == ((1, 3, 5), 5)
    assert (RULES["draft"].ks, RULES["draft"].submit_k) == ((1, 5, 10), 10)
    ranking = [str(i) for i in range(10)]
    gold = {"q1": ["0"], "q2": ["2"], "q3": ["4"], "q4": ["8"]}
    # hit: R@1 = 1/4, R@3 = 2/4, R@5 = 3/4, R@10 = 4/4
    final = evaluate_task(dict.fromkeys(gold, ranking), gold, "hit", "final")
    draft = evaluate_task(dict.fromkeys(gold, ranking), gold, "hit", "draft")
    assert [final[f"R@{k}"] for k in (1, 3, 5, 10)] == [0.25, 0.5, 0.75, 1.0]
    assert final["score"] == pytest.approx((0.25 + 0.5 + 0.75) / 3)
    assert draft["score"] == pytest.approx((0.25 + 0.75 + 1.0) / 3)
    assert draft["R@3"] == final["R@3"]  # every recall is reported under either rules
    with pytest.raises(ConfigError, match="unknown rule set 'kaggle'"):
        evaluate_task({}, gold, "hit", "kaggle")


def test_evaluate_both_tasks_overall_and_kinds():
    truth = _truth(
        mmdocir={"10000": ["0", "2"], "10001": ["5"]},
        m2kr={"0": ["p1"], "1": ["p9"]},
        kind={"10000": "text", "10001": "chart", "0": "image", "1": "wit"},
    )
    ranked = {"10000": ["0", "1", "3"], "10001": ["5"], "0": ["p1"], "1": ["p2", "p3"]}
    r = evaluate(ranked, ranked, truth, "final")
    assert set(r) == {"mmdocir", "m2kr", "overall"}
    assert r["mmdocir"]["R@1"] == pytest.approx((0.5 + 1.0) / 2)
    assert r["mmdocir"]["score"] == pytest.approx(0.75)
    assert r["m2kr"]["score"] == pytest.approx(0.5)
    assert r["overall"]["score"] == pytest.approx((0.75 + 0.5) / 2)
    assert r["overall"]["tasks"] == ["mmdocir", "m2kr"] and "note" not in r["overall"]
    # Kinds in the tables' order, each with its own questions.
    assert list(r["mmdocir"]["by_kind"]) == ["text", "chart"]
    assert r["mmdocir"]["by_kind"]["text"]["R@1"] == 0.5
    assert r["mmdocir"]["by_kind"]["chart"]["score"] == 1.0
    assert list(r["m2kr"]["by_kind"]) == ["image", "wit"]
    assert r["m2kr"]["by_kind"]["wit"]["questions"] == 1
    # A task whose questions have no kind gets no breakdown; one without a kind among others
    # with one is counted as "unknown".
    partial = {"10000": "text", "0": "image"}
    assert list(evaluate(ranked, ranked, _truth(truth.mmdocir, truth.m2kr, partial))["m2kr"]["by_kind"]) == [
        "image",
        "unknown",
    ]
    only_m2kr = evaluate(ranked, ranked, _truth(truth.mmdocir, truth.m2kr, {"0": "image"}))
    assert only_m2kr["mmdocir"]["by_kind"] == {} and list(only_m2kr["m2kr"]["by_kind"]) == [
        "image",
        "unknown",
    ]
    # kinds={} switches the breakdown off
    assert evaluate(ranked, ranked, truth, kinds={})["m2kr"]["by_kind"] == {}


def test_evaluate_one_task_says_so():
    truth = _truth(m2kr={"0": ["p1"], "1": ["p9"]})
    r = evaluate(None, {"0": ["p1"], "1": ["p2"]}, truth, "draft")
    assert r["mmdocir"] is None
    assert r["overall"]["score"] == r["m2kr"]["score"] == 0.5
    assert r["overall"]["tasks"] == ["m2kr"] and "only m2kr" in r["overall"]["note"]
    assert r["overall"]["rules"] == "draft" and r["overall"]["ks"] == [1, 5, 10]


# --- the submission CSV ------------------------------------------------------------------------


def test_round_trip_and_layout(tmp_path: Path):
    ranked = {
        "10001": ["4", "0", "1", "2", "3"],
        "0": ["wit_12", "wit_3", "kvqa_40", "wit_7", "wit_8"],
        "10000": ["12", "3", "40", "7", "8"],
    }
    out = write_submission(ranked, tmp_path / "sub.csv", "final")
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER
    # Rows in numeric question order; the list cell CSV-quoted, compact JSON inside.
    assert lines[1].startswith("0,")
    assert lines[2] == '10000,"[""12"",""3"",""40"",""7"",""8""]"'
    assert read_submission(out, "final") == ranked
    assert list(read_submission(out, "final")) == ["0", "10000", "10001"]
    assert SUBMISSION_CSV.recognise(out)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_write_pads_short_lists_and_drops_repeats(tmp_path: Path):
    out = write_submission({"0": ["a", "b"], "1": ["x", "x", "y", *"cdefghijk"]}, tmp_path / "s.csv", "draft")
    got = read_submission(out, "draft")
    assert got["0"] == ["a", "b"] + ["a"] * 8
    assert got["1"] == ["x", "y", *"cdefghij"]  # the repeat of x dropped, cut at 10
    # Padded lists score as the short ones.
    assert evaluate_task(got, {"0": ["b"], "1": ["y"]}, "hit", "draft")["R@5"] == 1.0
    with pytest.raises(SubmissionError, match="question '2': empty ranking"):
        write_submission({"2": []}, tmp_path / "e.csv")
    with pytest.raises(SubmissionError, match="question '3': ids must be strings; got 7"):
        write_submission({"3": [7]}, tmp_path / "e.csv")
    assert not (tmp_path / "e.csv").exists()


def test_write_refuses_what_it_did_not_write(tmp_path: Path):
    sub = tmp_path / "sub.csv"
    write_submission({"0": ["a"]}, sub)
    with pytest.raises(OutputError, match="already exists"):
        write_submission({"0": ["b"]}, sub)
    write_submission({"0": ["b"]}, sub, overwrite=True)  # an earlier submission: replaced
    assert read_submission(sub)["0"][0] == "b"
    notes = tmp_path / "notes.csv"
    notes.write_text("id,text\n1,mine\n")
    with pytest.raises(OutputError, match="is not a submission CSV"):
        write_submission({"0": ["a"]}, notes, overwrite=True)
    assert notes.read_text() == "id,text\n1,mine\n"


_GOOD = '0,"[""a"",""b"",""c"",""d"",""e""]"\n'


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty file"),
        (
            "qid,passage_id\n" + _GOOD,
            r"line 1: header is 'qid,passage_id'; expected 'question_id,passage_id'",
        ),
        (HEADER + "\n" + _GOOD + '1,"[""a"",""b"""\n', r"line 3, column 'passage_id': not JSON"),
        (HEADER + "\n" + _GOOD + '1,"{""a"": 1}"\n', r"line 3, column 'passage_id': a JSON dict"),
        (HEADER + "\n" + '0,"[""a"",""b"",""c""]"\n', r"line 2, .*3 ids; the final rules take exactly 5"),
        (HEADER + "\n" + "0,[12, 3, 40, 7, 8]\n", r"line 2: 6 fields; expected 2"),
        (HEADER + "\n" + '0,"[12,3,40,7,8]"\n', r"line 2, column 'passage_id': id 12 is a JSON int"),
        (
            HEADER + "\n" + _GOOD + "\n" + _GOOD,
            r"line 4, column 'question_id': '0' already appeared on line 2",
        ),
        (HEADER + "\n" + _GOOD.replace("0,", ",", 1), r"line 2, column 'question_id': empty"),
    ],
    ids=[
        "empty",
        "header",
        "bad-json",
        "not-a-list",
        "length",
        "unquoted",
        "non-string",
        "dup-qid",
        "no-qid",
    ],
)
def test_bad_csv_named(tmp_path: Path, text: str, match: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SubmissionError, match=match) as err:
        read_submission(path, "final")
    assert str(path) in str(err.value)


def test_length_follows_the_rules(tmp_path: Path):
    path = write_submission({"0": list("abcdefghij")}, tmp_path / "draft.csv", "draft")
    assert len(read_submission(path, "draft")["0"]) == 10
    with pytest.raises(SubmissionError, match="10 ids; the final rules take exactly 5 .*draft rules 10"):
        read_submission(path, "final")


def test_check_against_truth(tmp_path: Path):
    truth = _truth(mmdocir={"10000": ["1"], "10001": ["2"]}, m2kr={str(i): ["p"] for i in range(8)})
    full = {q: ["1", "9"] for q in truth.mmdocir} | {q: ["p", "zz"] for q in truth.m2kr}
    known = {q: {"0", "1", "2"} for q in truth.mmdocir} | {q: {"p", "q"} for q in truth.m2kr}
    counts = check_against_truth(full, truth, "sub.csv", known)
    assert counts["questions"] == 10
    assert counts["unknown_ids"] == 10 and counts["rows_with_unknown_ids"] == 10  # "9" and "zz"
    assert check_against_truth(full, truth, "sub.csv")["unknown_ids"] is None
    short = {q: v for q, v in full.items() if q not in {"1", "2", "3", "4", "5", "6", "7"}}
    with pytest.raises(
        SubmissionError,
        match=r"sub\.csv: 7 of the truth's 10 questions have no row \(first: '1', '2', '3', '4', '5', \.\.\.\)",
    ):
        check_against_truth(short, truth, "sub.csv")
    with pytest.raises(
        SubmissionError, match=r"sub\.csv: 1 question ids are not in the truth \(first: '99'\)"
    ):
        check_against_truth(full | {"99": ["p"]}, truth, "sub.csv")
