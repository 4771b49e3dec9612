"""The challenge's submission zip (prediction.csv at its root, header `ID,<track>`) and its scorer."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from mmctr.data.schema import TRACKS
from mmctr.errors import SubmissionError
from mmctr.training.metrics import auc

PREDICTION_FILE = "prediction.csv"


def write_submission(pred: np.ndarray, out: Path, track: str = "Task2") -> Path:
    """Write `pred` (one probability per test row, in test.parquet order) as the submission zip."""
    if track not in TRACKS:
        raise SubmissionError(f"unknown track {track!r}; expected one of {', '.join(TRACKS)}")
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if not np.isfinite(pred).all():
        raise SubmissionError(
            f"{int((~np.isfinite(pred)).sum())} predictions are NaN or infinite; nothing written"
        )
    buf = io.StringIO()
    buf.write(f"ID,{track}\n")
    np.savetxt(buf, np.column_stack([np.arange(pred.size), pred]), fmt=["%d", "%.8f"], delimiter=",")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(PREDICTION_FILE, buf.getvalue())
    tmp.replace(out)
    return out


def _parse_csv(text: str, where: str, value_name: str | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    lines = text.splitlines()
    if not lines:
        raise SubmissionError(f"{where}: empty file; expected a header 'ID,<column>'")
    header = [h.strip() for h in lines[0].split(",")]
    if len(header) != 2 or header[0] != "ID":
        raise SubmissionError(f"{where}: header is {lines[0]!r}; expected 'ID,<column>' (e.g. 'ID,Task2')")
    if value_name is not None and header[1] != value_name:
        raise SubmissionError(f"{where}: second column is {header[1]!r}; expected {value_name!r}")
    body = [ln for ln in lines[1:] if ln.strip()]
    ids = np.empty(len(body), dtype=np.int64)
    vals = np.empty(len(body), dtype=np.float64)
    for i, ln in enumerate(body):
        parts = ln.split(",")
        if len(parts) != 2:
            raise SubmissionError(f"{where}: line {i + 2} has {len(parts)} fields; expected 2")
        try:
            ids[i] = int(parts[0])
            vals[i] = float(parts[1])
        except ValueError:
            raise SubmissionError(f"{where}: line {i + 2} ({ln!r}) is not 'integer,number'") from None
    return header[1], ids, vals


def read_submission(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """(track, ids, predictions) from a submission zip, or from a bare prediction.csv."""
    path = Path(path)
    if not path.exists():
        raise SubmissionError(f"{path}: file not found")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if PREDICTION_FILE not in zf.namelist():
                raise SubmissionError(
                    f"{path}: the zip has no {PREDICTION_FILE} at its root (it holds {zf.namelist()})"
                )
            text = zf.read(PREDICTION_FILE).decode()
        where = f"{path}:{PREDICTION_FILE}"
    else:
        text, where = path.read_text(), str(path)
    track, ids, vals = _parse_csv(text, where)
    if track not in TRACKS:
        raise SubmissionError(
            f"{where}: column {track!r} is not a track; expected one of {', '.join(TRACKS)}"
        )
    return track, ids, vals


def read_labels(path: Path) -> np.ndarray:
    """Ground-truth labels from an `ID,label` csv, indexed by ID."""
    _, ids, labels = _parse_csv(Path(path).read_text(), str(path), "label")
    if not np.array_equal(np.sort(ids), np.arange(len(ids))):
        raise SubmissionError(f"{path}: IDs must be 0..{len(ids) - 1} once each")
    y = np.empty(len(ids))
    y[ids] = labels
    return y


def score(pred_path: Path, truth_path: Path) -> dict[str, float | int | str]:
    """AUC of a submission against `ID,label` ground truth, after checking rows and IDs."""
    track, ids, pred = read_submission(pred_path)
    truth = read_labels(truth_path)
    where = f"{pred_path}"
    if len(ids) != len(truth):
        raise SubmissionError(
            f"{where}: {len(ids)} prediction rows; the test set has {len(truth)} (one per test row)"
        )
    if not np.array_equal(np.sort(ids), np.arange(len(ids))):
        missing = np.setdiff1d(np.arange(len(ids)), ids)
        dup = len(ids) - len(np.unique(ids))
        raise SubmissionError(
            f"{where}: IDs must be 0..{len(ids) - 1} once each; {len(missing)} missing (first {missing[:5].tolist()}), {dup} duplicated"
        )
    bad = ~np.isfinite(pred)
    if bad.any():
        raise SubmissionError(
            f"{where}: {int(bad.sum())} predictions are NaN or infinite (first at ID {int(ids[bad][0])})"
        )
    order = np.argsort(ids)
    return {"auc": auc(truth, pred[order]), "rows": int(len(ids)), "track": track}


def score_json(pred_path: Path, truth_path: Path) -> str:
    return json.dumps(score(pred_path, truth_path))
