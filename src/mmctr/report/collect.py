"""Find the inputs of a report and read each into a typed record.

A path's kind is decided by the files it holds (never by its name), in the order of `KINDS`; a
directory that is none of them but holds some (`mmctr demo`'s output, a folder of runs) stands for
the recognised entries directly inside it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.errors import MMCTRError
from mmctr.report.misses import Miss

# What `mmctr report` accepts, and the files each kind is recognised by (shown in errors and --help).
KINDS: dict[str, str] = {
    "track2_run": "Track 2 run directory (`mmctr train`): config.yaml + metrics.json + run.json",
    "bench": "Track 2 bench output (`mmctr bench`): a directory with bench.json, or bench.json itself",
    "track1_bench": "Track 1 bench output (`mmctr bench --track1`): a directory with "
    "retrieval_bench.json, or such a JSON file (keys rows[].scores)",
    "track1_demo": "Track 1 demo directory (`mmctr retrieval demo`): retrieval_demo_summary.json "
    "(+ its submission CSV and data root, for the gallery of missed queries)",
    "track1_score": "Track 1 score file (`mmctr retrieval score --json > FILE.json`): keys "
    "mmdocir, m2kr, overall",
    "track1_run": "Track 1 trained run (`mmctr retrieval train`): retrieval_run.json + metrics.json",
    "embedding": "item_info parquet (`mmctr embed`, or DATA/MicroLens_1M_x1/item_info.parquet): "
    "columns item_id, item_tags, item_emb_d128",
    "task1_table": "Task-1 embedding table (docs/benchmarks/embeddings.json): keys auc.rows[]",
}


class ReportInputError(MMCTRError):
    """A path given to `mmctr report` that is missing, unreadable or of no known kind."""


def _accepted() -> str:
    return "accepted: " + "; ".join(KINDS.values())


# ----------------------------------------------------------------------------------------------
# records


@dataclass
class Track2Run:
    path: Path
    name: str
    model: str
    data: str
    config_diff: list[str]  # "train.lr=0.003" for every value that differs from the model's defaults
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


@dataclass
class Bench:
    path: Path
    name: str
    records: list[dict[str, Any]]
    machine: dict[str, Any] | None
    meta: dict[str, Any]


@dataclass
class Track1Row:
    """One retriever (or index option) scored on Track 1."""

    name: str
    scores: dict[str, Any]  # task -> metrics.evaluate_task's dict (None when not scored)
    summary: dict[str, Any] = field(default_factory=dict)  # the bench's summary columns, when known
    kind: str = "retriever"
    costs: dict[str, Any] = field(default_factory=dict)  # task -> the bench's cost dict


@dataclass
class Track1Result:
    path: Path
    name: str
    source: str  # "bench", "demo", "score"
    rows: list[Track1Row]
    machine: dict[str, Any] | None = None
    data: str = ""
    rules: str = ""
    misses: list[Miss] = field(default_factory=list)
    misses_note: str = ""


@dataclass
class Track1Run:
    path: Path
    name: str
    metrics: dict[str, Any]
    info: dict[str, Any]


@dataclass
class Embedding:
    path: Path
    name: str
    emb: np.ndarray  # (n_rows, d); row 0 padding
    tags: np.ndarray  # (n_rows, 5)
    report: dict[str, Any] | None
    data_root: Path | None


@dataclass
class Task1Table:
    path: Path
    name: str
    table: dict[str, Any]


@dataclass
class Inputs:
    track2_runs: list[Track2Run] = field(default_factory=list)
    benches: list[Bench] = field(default_factory=list)
    track1: list[Track1Result] = field(default_factory=list)
    track1_runs: list[Track1Run] = field(default_factory=list)
    embeddings: list[Embedding] = field(default_factory=list)
    task1_tables: list[Task1Table] = field(default_factory=list)

    def empty(self) -> bool:
        return not any(vars(self).values())


# ----------------------------------------------------------------------------------------------
# detection


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ReportInputError(f"{path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise ReportInputError(f"{path}: not valid JSON ({err})") from None


def _peek_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is not a readable JSON file (detection only)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _json_kind(d: Any) -> str | None:
    if isinstance(d, list) and d and all(isinstance(r, dict) and "system" in r for r in d):
        return "bench"
    if not isinstance(d, dict):
        return None
    rows = d.get("rows")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) and "scores" in r for r in rows):
        return "track1_bench"
    if "overall" in d and ("mmdocir" in d or "m2kr" in d):
        return "track1_score"
    if isinstance(d.get("auc"), dict) and isinstance(d["auc"].get("rows"), list):
        return "task1_table"
    return None


def _is_item_info(path: Path) -> bool:
    try:
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
    except Exception:  # any unreadable file is simply not this kind
        return False
    return {"item_id", "item_tags", "item_emb_d128"} <= names


def detect(path: Path) -> str | None:
    """The kind of `path` (a key of KINDS), or None."""
    path = Path(path)
    if path.is_dir():
        if all((path / n).is_file() for n in ("config.yaml", "metrics.json", "run.json")):
            return "track2_run"
        if (path / "bench.json").is_file():
            return "bench"
        if (path / "retrieval_bench.json").is_file():
            return "track1_bench"
        if (path / "retrieval_demo_summary.json").is_file():
            return "track1_demo"
        if (path / "retrieval_run.json").is_file() and (path / "metrics.json").is_file():
            return "track1_run"
        return None
    if path.is_file():
        if path.suffix == ".parquet":
            return "embedding" if _is_item_info(path) else None
        if path.suffix == ".json":
            return _json_kind(_peek_json(path))
    return None


def expand(paths: list[Path]) -> list[tuple[str, Path]]:
    """(kind, path) for every input: a path of a known kind, or the known entries directly inside
    a directory of none. Anything else is an error naming the path and what is accepted."""
    out: list[tuple[str, Path]] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ReportInputError(f"{p}: no such file or directory")
        kind = detect(p)
        if kind is not None:
            out.append((kind, p))
            continue
        inside = [(detect(c), c) for c in sorted(p.iterdir())] if p.is_dir() else []
        inside = [(k, c) for k, c in inside if k is not None]
        if not inside:
            if p.suffix == ".json" and _peek_json(p) is None:
                _read_json(p)  # raises, saying why it is not JSON
            what = "directory holds no input" if p.is_dir() else "file is not an input"
            raise ReportInputError(f"{p}: this {what} `mmctr report` knows; {_accepted()}")
        out.extend(inside)  # type: ignore[arg-type]
    return out


# ----------------------------------------------------------------------------------------------
# readers


def config_diff(raw: dict[str, Any], where: Path) -> list[str]:
    """`section.key=value` for every value of a run's config.yaml that differs from its model's
    defaults (configs/<model>.yaml and TrainConfig)."""
    from mmctr.config import resolve_run_config, to_dict

    try:
        default = to_dict(resolve_run_config(str(raw.get("model"))))
    except MMCTRError:
        return [f"(model {raw.get('model')!r} is not registered here: no defaults to compare)"]
    out = []
    for section in ("model_params", "train"):
        have, base = raw.get(section) or {}, default.get(section) or {}
        for key in sorted(set(have) | set(base)):
            if have.get(key) != base.get(key):
                value = have.get(key, "(unset)")
                out.append(f"{section.removesuffix('_params')}.{key}={json.dumps(value)}")
    return out


def read_track2_run(path: Path) -> Track2Run:
    import yaml

    try:
        raw = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except yaml.YAMLError as err:
        raise ReportInputError(f"{path / 'config.yaml'}: not valid YAML ({err})") from None
    metrics = _read_json(path / "metrics.json")
    facts = _read_json(path / "run.json")
    if not isinstance(metrics, dict) or "valid_auc" not in metrics:
        raise ReportInputError(f"{path / 'metrics.json'}: has no valid_auc; is this a run of `mmctr train`?")
    return Track2Run(
        path=path,
        name=path.name,
        model=str(raw.get("model", metrics.get("model", "?"))),
        data=_short(str(facts.get("data_root", "?"))),
        config_diff=config_diff(raw, path),
        metrics=metrics,
        history=list(metrics.get("history") or []),
    )


def read_bench(path: Path) -> Bench:
    file = path / "bench.json" if path.is_dir() else path
    records = _read_json(file)
    if _json_kind(records) != "bench":
        raise ReportInputError(f"{file}: expected a list of bench records (each with 'system')")
    folder = file.parent
    machine = _peek_json(folder / "machine.json") if (folder / "machine.json").is_file() else None
    meta = _peek_json(folder / "meta.json") if (folder / "meta.json").is_file() else None
    return Bench(file, _name(path), records, machine, meta or {})


def _short(path: str) -> str:
    """A data root as tables show it: its last two path parts (`demo_out/data_small_seed0`)."""
    return "/".join(Path(path).parts[-2:])


def _name(path: Path) -> str:
    """A short name for a path: the folder, or folder/stem for a file in a folder."""
    if path.is_dir():
        return path.name
    stem = path.stem
    return f"{path.parent.name}/{stem}" if stem in ("bench", "retrieval_bench", "metrics") else stem


def read_track1_bench(path: Path) -> Track1Result:
    file = path / "retrieval_bench.json" if path.is_dir() else path
    d = _read_json(file)
    if _json_kind(d) != "track1_bench":
        raise ReportInputError(f"{file}: expected a Track 1 bench result (rows with scores)")
    rows = [
        Track1Row(
            name=str(r.get("name") or r.get("retriever") or "?"),
            scores=r.get("scores") or {},
            summary=r.get("summary") or {},
            kind=str(r.get("kind", "retriever")),
            costs={t: r[f"{t}_costs"] for t in ("mmdocir", "m2kr") if isinstance(r.get(f"{t}_costs"), dict)},
        )
        for r in d["rows"]
    ]
    return Track1Result(
        file, _name(path), "bench", rows, d.get("machine"), str(d.get("data", "")), str(d.get("rules", ""))
    )


def read_track1_score(path: Path) -> Track1Result:
    d = _read_json(path)
    ov = d.get("overall") or {}
    row = Track1Row(path.stem, {t: d.get(t) for t in ("mmdocir", "m2kr")}, {"overall": ov.get("score")})
    return Track1Result(path, _name(path), "score", [row], rules=str(ov.get("rules", "")))


def read_track1_demo(path: Path, gallery: int = 6) -> Track1Result:
    from mmctr.report.misses import find_demo_inputs, worst_misses

    d = _read_json(path / "retrieval_demo_summary.json")
    scores = d.get("scores") or {}
    ov = scores.get("overall") or {}
    predict = d.get("predict") or {}
    retriever = str(predict.get("retriever") or "retriever")
    csv, data_root = find_demo_inputs(path)
    name = csv.stem.removeprefix("submission_") if csv is not None else retriever
    row = Track1Row(name, {t: scores.get(t) for t in ("mmdocir", "m2kr")}, {"overall": ov.get("score")})
    result = Track1Result(
        path, path.name, "demo", [row], data=str(data_root or ""), rules=str(ov.get("rules", "final"))
    )
    if csv is None or data_root is None:
        result.misses_note = f"{path}: no submission_*.csv and data_*/truth beside the summary; no gallery"
    else:
        result.misses = worst_misses(data_root, csv, result.rules or "final", per_task=gallery)
    return result


def read_track1_run(path: Path) -> Track1Run:
    metrics = _read_json(path / "metrics.json")
    info = _read_json(path / "retrieval_run.json")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("history"), list):
        raise ReportInputError(
            f"{path / 'metrics.json'}: has no history; is this a `mmctr retrieval train` run?"
        )
    return Track1Run(path, path.name, metrics, info if isinstance(info, dict) else {})


def read_embedding(path: Path) -> Embedding:
    from mmctr.data.reader import read_item_info

    items = read_item_info(path)
    report_path = path.with_suffix(".json")
    report = _peek_json(report_path) if report_path.is_file() else None
    data_root = None
    if isinstance(report, dict) and report.get("data"):
        data_root = Path(str(report["data"]))
    elif path.parent.name == "MicroLens_1M_x1":
        data_root = path.parent.parent  # the data set's own item_info
    if data_root is not None and not data_root.is_dir():
        data_root = None
    name = path.stem if path.parent.name != "MicroLens_1M_x1" else f"{path.parent.parent.name} (provided)"
    return Embedding(
        path, name, items.emb, items.tags, report if isinstance(report, dict) else None, data_root
    )


def read_task1_table(path: Path) -> Task1Table:
    return Task1Table(path, _name(path), _read_json(path))


READERS: dict[str, Callable[[Path], Any]] = {
    "track2_run": read_track2_run,
    "bench": read_bench,
    "track1_bench": read_track1_bench,
    "track1_demo": read_track1_demo,
    "track1_score": read_track1_score,
    "track1_run": read_track1_run,
    "embedding": read_embedding,
    "task1_table": read_task1_table,
}

_FIELD = {
    "track2_run": "track2_runs",
    "bench": "benches",
    "track1_bench": "track1",
    "track1_demo": "track1",
    "track1_score": "track1",
    "track1_run": "track1_runs",
    "embedding": "embeddings",
    "task1_table": "task1_tables",
}


def collect(paths: list[Path]) -> Inputs:
    """Every input read, grouped by kind; names made unique so tables and legends tell them apart."""
    if not paths:
        raise ReportInputError(f"no input given; {_accepted()}")
    inputs = Inputs()
    seen: dict[str, int] = {}
    for kind, path in expand(paths):
        record = READERS[kind](path)
        n = seen.get(record.name, 0)
        seen[record.name] = n + 1
        if n:
            record.name = f"{record.name} ({n + 1})"
        getattr(inputs, _FIELD[kind]).append(record)
    return inputs


# ----------------------------------------------------------------------------------------------
# small helpers shared by plots and html


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


_BRACKET = re.compile(r"\[(.*)\]")


def bench_config(record: dict[str, Any]) -> str:
    """What a bench system changed from its model's defaults, from its name (`din[x=1]@bf16`)."""
    system = str(record.get("system", ""))
    m = _BRACKET.search(system)
    parts = [m.group(1)] if m else []
    if "@" in system:
        parts.append(system.rsplit("@", 1)[1])
    return ", ".join(parts)
