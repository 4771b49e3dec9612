"""The challenge's submission zip (prediction.csv at its root, header `ID,<track>`) and its scorer."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mmctr.data.schema import TRACKS
from mmctr.errors import SubmissionError
from mmctr.outputs import OutputKind, check_out, move_into_place, temp_beside
from mmctr.training.metrics import auc

PREDICTION_FILE = "prediction.csv"


def _is_submission(path: Path) -> bool:
    """An earlier output of `mmctr predict`: a zip holding prediction.csv, or such a csv."""
    try:
        read_submission(path)
    except SubmissionError:
        return False
    return True


SUBMISSION = OutputKind("submission (zip or prediction csv)", _is_submission, is_dir=False)


def check_submission_out(out: Path, overwrite: bool = False) -> Path:
    """Refuse an --out that is not .zip/.csv, or that may not be written (`mmctr.outputs`)."""
    out = Path(out)
    if out.suffix.lower() not in (".zip", ".csv"):
        raise SubmissionError(
            f"{out}: expected a .zip (the challenge's submission) or a .csv (prediction.csv alone)"
        )
    check_out(out, SUBMISSION, overwrite)
    return out


def write_submission(pred: np.ndarray, out: Path, track: str = "Task2", overwrite: bool = False) -> Path:
    """Write `pred` (one probability per test row, in test.parquet order) as the submission: a zip
    holding prediction.csv (what the challenge takes), or the bare csv when `out` ends in .csv."""
    if track not in TRACKS:
        raise SubmissionError(f"unknown track {track!r}; expected one of {', '.join(TRACKS)}")
    out = check_submission_out(out, overwrite)
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if not np.isfinite(pred).all():
        raise SubmissionError(
            f"{int((~np.isfinite(pred)).sum())} predictions are NaN or infinite; nothing written"
        )
    buf = io.StringIO()
    buf.write(f"ID,{track}\n")
    np.savetxt(buf, np.column_stack([np.arange(pred.size), pred]), fmt=["%d", "%.8f"], delimiter=",")
    tmp = temp_beside(out)
    try:
        if out.suffix.lower() == ".csv":
            tmp.write_text(buf.getvalue())
        else:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(PREDICTION_FILE, buf.getvalue())
        move_into_place(tmp, out, SUBMISSION, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
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
        except (ValueError, OverflowError):
            raise SubmissionError(f"{where}: line {i + 2} ({ln!r}) is not 'integer,number'") from None
    return header[1], ids, vals


def _read_text(path: Path, role: str, expected: str) -> str:
    """The text of a csv the user named, with errors that say which file and what was expected."""
    path = Path(path)
    if not path.exists():
        raise SubmissionError(f"{path}: file not found; {role} should be {expected}")
    if path.is_dir():
        hint = ""
        if (path / "test_labels.csv").exists():
            hint = f" (did you mean {path / 'test_labels.csv'}?)"
        raise SubmissionError(f"{path}: is a directory; {role} should be {expected}{hint}")
    data = path.read_bytes()
    if data[:4] == b"PAR1":
        raise SubmissionError(f"{path}: is a parquet file; {role} should be {expected}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: is not a text file; {role} should be {expected}") from None


# The challenge's test split has ~380k rows (~10 MB of csv); anything far larger is not a submission,
# and a small zip that inflates to gigabytes (a zip bomb) is refused before it is read.
MAX_PREDICTION_BYTES = 1 << 30


def _read_zip_member(path: Path) -> str:
    """prediction.csv from a submission zip, read by name only: nothing is extracted to disk."""
    where = f"{path}:{PREDICTION_FILE}"
    try:
        with zipfile.ZipFile(path) as zf:
            if PREDICTION_FILE not in zf.namelist():
                raise SubmissionError(
                    f"{path}: the zip has no {PREDICTION_FILE} at its root (it holds {zf.namelist()[:10]})"
                )
            if zf.getinfo(PREDICTION_FILE).file_size > MAX_PREDICTION_BYTES:
                raise SubmissionError(
                    f"{where}: inflates to {zf.getinfo(PREDICTION_FILE).file_size:,} bytes, more than "
                    f"{MAX_PREDICTION_BYTES:,}; not a submission"
                )
            with zf.open(PREDICTION_FILE) as f:
                data = f.read(MAX_PREDICTION_BYTES + 1)
    except SubmissionError:
        raise
    except NotImplementedError as err:  # before RuntimeError, its base class
        raise SubmissionError(f"{where}: cannot be read ({err}); use deflate or no compression") from None
    except RuntimeError as err:  # zipfile's "encrypted, password required"
        raise SubmissionError(f"{where}: cannot be read ({err}); submit an unencrypted zip") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise SubmissionError(f"{path}: damaged zip ({err}); write the submission again") from None
    if len(data) > MAX_PREDICTION_BYTES:
        raise SubmissionError(f"{where}: more than {MAX_PREDICTION_BYTES:,} bytes; not a submission")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError(f"{where}: is not UTF-8 text; expected a csv with header ID,<track>") from None


_PRED_EXPECTED = "a submission zip (prediction.csv inside) or a csv with header ID,<track>"
_TRUTH_EXPECTED = "a ground-truth csv with header ID,label (DATA/truth/test_labels.csv)"


def read_submission(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """(track, ids, predictions) from a submission zip, or from a bare prediction.csv."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        text, where = _read_zip_member(path), f"{path}:{PREDICTION_FILE}"
    else:
        text, where = _read_text(path, "--pred", _PRED_EXPECTED), str(path)
    track, ids, vals = _parse_csv(text, where)
    if track == "label":
        raise SubmissionError(
            f"{where}: has the ground truth's header ID,label; --pred takes the predictions "
            "(did you swap --pred and --truth?)"
        )
    if track not in TRACKS:
        raise SubmissionError(
            f"{where}: column {track!r} is not a track; expected one of {', '.join(TRACKS)}"
        )
    return track, ids, vals


def read_labels(path: Path) -> np.ndarray:
    """Ground-truth labels from an `ID,label` csv, indexed by ID."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        raise SubmissionError(
            f"{path}: is a zip (a submission?); --truth takes {_TRUTH_EXPECTED} (did you swap --pred and --truth?)"
        )
    text = _read_text(path, "--truth", _TRUTH_EXPECTED)
    first = text.split("\n", 1)[0].strip()
    if first.startswith("ID,") and first[3:] in TRACKS:
        raise SubmissionError(
            f"{path}: has a submission's header {first!r}; --truth takes {_TRUTH_EXPECTED} "
            "(did you swap --pred and --truth?)"
        )
    _, ids, labels = _parse_csv(text, str(path), "label")
    if not np.array_equal(np.sort(ids), np.arange(len(ids))):
        raise SubmissionError(f"{path}: IDs must be 0..{len(ids) - 1} once each")
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SubmissionError(f"{path}: ID {int(ids[i])} has label {labels[i]}; labels are 0 or 1")
    y = np.empty(len(ids))
    y[ids] = labels
    return y


def oracle_test_auc(truth_path: Path) -> float | None:
    """AUC of the generator's true click probability on the test labels (the ceiling), when the
    truth is a generated data root's (`click_probability.parquet` beside the labels); else None."""
    from mmctr.data.reader import true_click_probability

    truth_path = Path(truth_path)
    probs = truth_path.parent / "click_probability.parquet"
    if not probs.is_file():
        return None
    p = true_click_probability(probs, "test")
    labels = read_labels(truth_path)
    if len(p) != len(labels):
        return None
    return auc(labels, p)


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
