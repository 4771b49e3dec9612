"""A trained run's towers as the index uses them (`mmctr retrieval index --run RUN`), one adapter
per run kind, chosen by the kind its `retrieval_run.json` names (`load_towers`):

- `RunTowers`, a two-tower run (`mmctr retrieval train`): the candidate tower at index time (page
  text -> `doc_text`, page windows -> `image`), the query tower at search time (`query_text`, the
  photo through the same `image`) and the query's field weights to fuse the two.
- `DistilledTowers`, a distilled run (`mmctr retrieval distill`): one vector per page or passage from
  its frozen token vectors through the student's candidate tower, one per query through its query
  tower. The student has no image tower, so its index holds text vectors only.

numpy in, numpy out, so the index never handles tensors; the index owns the encoders.

An index stores vectors that only this model's query tower can search, so it records the run's path,
kind and the sha256 of its `model.safetensors`, and `recorded_in` refuses a run that moved or changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.errors import DataError

MODEL_FILE = "model.safetensors"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recorded_run(entry: dict, manifest: Path) -> Path:
    """The run directory an index's manifest names (its `run` entry), refused when it is missing or
    its model changed: the index's vectors came from that exact model."""
    if not isinstance(entry, dict) or not entry.get("path") or not entry.get("sha256"):
        raise DataError(manifest, None, "'run' needs 'path' and 'sha256'; rebuild the index with --run")
    model_file = Path(entry["path"]) / MODEL_FILE
    if not model_file.is_file():
        raise DataError(
            model_file,
            None,
            f"not found: the index ({manifest.parent}) was built with this run; restore the run "
            "there, or rebuild the index with --run",
        )
    digest = file_sha256(model_file)
    if digest != entry["sha256"]:
        raise DataError(
            model_file,
            None,
            f"changed since the index ({manifest.parent}) was built (sha256 {digest[:12]}..., the "
            f"index recorded {entry['sha256'][:12]}...): its vectors came from the old model; "
            "rebuild the index with --run, or restore the run",
        )
    return Path(entry["path"])


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


class RunTowers:
    """The model of a run directory (`mmctr retrieval train --out RUN`) and the encoder options its
    features were computed with (`retrieval_run.json`: encoders, image size, crop grids)."""

    def __init__(self, run: Path):
        from mmctr.retrieval.trained.train import RUN_FILE, load_run

        self.path = Path(run).resolve()
        self.model, info = load_run(self.path)
        self.sha256 = file_sha256(self.path / MODEL_FILE)
        recorded = info.get("retriever_options")
        if not isinstance(recorded, dict):
            raise DataError(self.path / RUN_FILE, None, "has no 'retriever_options'; retrain the run")
        self.recorded: dict[str, Any] = dict(recorded)
        if "crop_grids" in self.recorded:
            self.recorded["crop_grids"] = tuple(self.recorded["crop_grids"])
        self._run_file = self.path / RUN_FILE

    @classmethod
    def recorded_in(cls, entry: dict, manifest: Path) -> RunTowers:
        """The run an index's manifest names, refused when it is missing or its model changed."""
        return cls(recorded_run(entry, manifest))

    def manifest_entry(self) -> dict[str, str]:
        return {"path": str(self.path), "sha256": self.sha256}

    def retriever_options(self, options):
        """`options` with the run's feature options: vectors must match what the model trained on."""
        known = {f.name for f in dataclasses.fields(options)}
        unknown = sorted(set(self.recorded) - known)
        if unknown:
            raise DataError(
                self._run_file, None, f"unknown retriever option(s) {unknown} in 'retriever_options'"
            )
        return dataclasses.replace(options, **self.recorded)

    def _apply(self, module, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def doc_text(self, x: np.ndarray) -> np.ndarray:
        """(n, Dt) encoder vectors of candidate texts -> (n, Dt) candidate-tower vectors (unit)."""
        return self._apply(self.model.doc_text, x)

    def query_text(self, x: np.ndarray) -> np.ndarray:
        """(n, Dt) encoder vectors of query texts -> (n, Dt) query-tower vectors (unit)."""
        return self._apply(self.model.query_text, x)

    def image(self, raw: np.ndarray, center: np.ndarray) -> np.ndarray:
        """(n, Di) raw image-encoder vectors (windows or photos) -> (n, Di) projected (unit), after
        centring on the pool's mean window and normalising, as the model was trained."""
        return self._apply(self.model.image, unit(raw - center))

    def fusion_weights(self, q_raw: np.ndarray) -> tuple[float, float]:
        """(text, image) field weights of a text+photo query: the M2KR fields `dense_passage` and
        `image`, with the flags of a query that has both (raw encoder vector in, as in training)."""
        import torch

        from mmctr.retrieval.trained.features import FIELDS

        q = torch.from_numpy(np.ascontiguousarray(q_raw, dtype=np.float32).reshape(1, -1))
        with torch.no_grad():
            w = self.model.field_weights(q, torch.tensor([[1.0, 1.0, 1.0]]))[0]
        return float(w[FIELDS.index("dense_passage")]), float(w[FIELDS.index("image")])


class DistilledTowers:
    """The student of a distilled run (`mmctr retrieval distill --out RUN`) and the token options
    (`text_encoder`, `doc_text`, `query_instruction`) it was distilled with: token matrices in (the
    `late` retriever's `TokenEncoder` output, which shares its cache), unit vectors out."""

    def __init__(self, run: Path):
        from mmctr.retrieval.trained.distill import RUN_FILE, TOKEN_OPTIONS, load_student

        self.path = Path(run).resolve()
        self.model, info = load_student(self.path)
        self.sha256 = file_sha256(self.path / MODEL_FILE)
        recorded = info.get("retriever_options")
        if not isinstance(recorded, dict):
            raise DataError(self.path / RUN_FILE, None, "has no 'retriever_options'; distil the run again")
        self.recorded: dict[str, Any] = {k: recorded[k] for k in TOKEN_OPTIONS if k in recorded}

    @classmethod
    def recorded_in(cls, entry: dict, manifest: Path) -> DistilledTowers:
        """The run an index's manifest names, refused when it is missing or its model changed."""
        return cls(recorded_run(entry, manifest))

    def manifest_entry(self) -> dict[str, str]:
        from mmctr.retrieval.trained.distill import KIND

        return {"path": str(self.path), "sha256": self.sha256, "kind": KIND}

    def retriever_options(self, options):
        """`options` with the run's token options: the same token vectors the student was distilled on."""
        return dataclasses.replace(options, **self.recorded)

    def doc_tokens(self, mats: list[np.ndarray]) -> np.ndarray:
        """Token matrices (n_tokens, D) of n candidate texts -> (n, D) candidate-tower vectors (unit)."""
        from mmctr.retrieval.trained.distill import text_vectors

        return text_vectors(self.model.candidates, mats, self.model.config.dim)

    def query_tokens(self, mats: list[np.ndarray]) -> np.ndarray:
        """Token matrices (n_tokens, D) of n query texts -> (n, D) query-tower vectors (unit)."""
        from mmctr.retrieval.trained.distill import text_vectors

        return text_vectors(self.model.queries, mats, self.model.config.dim)


Towers = RunTowers | DistilledTowers


def run_kind(run: Path) -> str | None:
    """The `kind` a run directory's retrieval_run.json names; None where it names none or is
    unreadable (the adapter's loader then says what is wrong)."""
    from mmctr.retrieval.trained.train import RUN_FILE

    try:
        kind = json.loads((Path(run) / RUN_FILE).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def load_towers(run: Path) -> Towers:
    """The adapter of a run directory, by its kind: a distilled run or (any other) a two-tower run."""
    from mmctr.retrieval.trained.distill import KIND

    return DistilledTowers(run) if run_kind(run) == KIND else RunTowers(run)
