"""The submission zip and the scorer."""

from __future__ import annotations

import itertools
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mmctr.errors import SubmissionError
from mmctr.submission import read_submission, score, write_submission
from mmctr.training.metrics import auc, logloss


def _truth(path: Path, labels: np.ndarray) -> Path:
    path.write_text("ID,label\n" + "".join(f"{i},{int(v)}\n" for i, v in enumerate(labels)))
    return path


def test_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 6, 60).astype(float)  # many ties
    pairs = [(a, b) for a, b in itertools.product(np.flatnonzero(y), np.flatnonzero(1 - y))]
    brute = np.mean([1.0 if s[a] > s[b] else 0.5 if s[a] == s[b] else 0.0 for a, b in pairs])
    assert auc(y, s) == pytest.approx(brute)
    assert auc([0, 1], [0.1, 0.9]) == 1.0 and auc([1, 0], [0.1, 0.9]) == 0.0
    assert logloss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))


def test_zip_layout_and_round_trip(tmp_path: Path):
    pred = np.array([0.1, 0.9, 0.25, 0.5])
    out = write_submission(pred, tmp_path / "sub.zip", "Task1&2")
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["prediction.csv"]
        lines = zf.read("prediction.csv").decode().splitlines()
    assert lines[0] == "ID,Task1&2" and lines[1].startswith("0,0.1") and len(lines) == 5
    track, ids, vals = read_submission(out)
    assert track == "Task1&2" and ids.tolist() == [0, 1, 2, 3] and np.allclose(vals, pred)


def test_score(tmp_path: Path):
    labels = np.array([0, 1, 0, 1, 1, 0])
    truth = _truth(tmp_path / "labels.csv", labels)
    write_submission(labels * 0.8 + 0.1, tmp_path / "perfect.zip")
    assert score(tmp_path / "perfect.zip", truth)["auc"] == 1.0
    write_submission(np.array([0.3, 0.2, 0.1, 0.6, 0.5, 0.4]), tmp_path / "some.zip")
    assert score(tmp_path / "some.zip", truth)["auc"] == pytest.approx(
        auc(labels, [0.3, 0.2, 0.1, 0.6, 0.5, 0.4])
    )


def test_wrong_row_count(tmp_path: Path):
    truth = _truth(tmp_path / "labels.csv", np.array([0, 1, 0, 1]))
    write_submission(np.array([0.1, 0.2, 0.3]), tmp_path / "short.zip")
    with pytest.raises(SubmissionError, match=r"short\.zip.*3 prediction rows; the test set has 4"):
        score(tmp_path / "short.zip", truth)


def test_missing_ids_and_nan(tmp_path: Path):
    truth = _truth(tmp_path / "labels.csv", np.array([0, 1, 0]))
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("prediction.csv", "ID,Task2\n0,0.1\n0,0.2\n2,0.3\n")
    with pytest.raises(SubmissionError, match=r"IDs must be 0\.\.2 once each; 1 missing"):
        score(bad, truth)
    nan = tmp_path / "nan.zip"
    with zipfile.ZipFile(nan, "w") as zf:
        zf.writestr("prediction.csv", "ID,Task2\n0,0.1\n1,nan\n2,0.3\n")
    with pytest.raises(SubmissionError, match=r"1 predictions are NaN"):
        score(nan, truth)
    with pytest.raises(SubmissionError, match="NaN"):
        write_submission(np.array([0.1, np.nan]), tmp_path / "never.zip")
    assert not (tmp_path / "never.zip").exists()


def test_zip_without_prediction_csv(tmp_path: Path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("sub/prediction.csv", "ID,Task2\n0,0.1\n")
    with pytest.raises(SubmissionError, match="no prediction.csv at its root"):
        read_submission(bad)
