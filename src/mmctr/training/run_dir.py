"""A trained run is a directory that training, prediction, serving and benchmarks load the same way:

RUN/config.yaml         the resolved configuration (model, model_params, train)
RUN/model.safetensors   the learned weights
RUN/items.safetensors   the item table the model looks up (tags, frozen embedding, levels)
RUN/run.json            facts: data root, item_info source, sizes, mmctr version
RUN/metrics.json        valid_auc, valid_logloss, oracle_valid_auc (synthetic data), history
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

from mmctr import __version__
from mmctr.compress.quant import load_safetensors
from mmctr.config import RunConfig, from_dict, model_config, to_dict
from mmctr.data.reader import ItemTable
from mmctr.errors import MMCTRError
from mmctr.models import get_model_class
from mmctr.outputs import RUN_DIR, check_out, move_into_place, temp_beside


def build_model(cfg: RunConfig, items: ItemTable) -> nn.Module:
    return get_model_class(cfg.model)(model_config(cfg), items)


def _items_tensors(items: ItemTable) -> dict[str, torch.Tensor]:
    return {
        "tags": torch.tensor(items.tags),
        "emb": torch.tensor(items.emb),
        "likes": torch.tensor(items.likes),
        "views": torch.tensor(items.views),
    }


def _compacted(model: nn.Module, state: dict, items_t: dict, facts: dict[str, Any]) -> tuple:
    """The state and item tensors as a quantised run stores them (`mmctr.compress.quant`), with the
    safetensors metadata that `load_run` expands them by; unchanged for other runs."""
    spec = facts.get("compress", {}).get("quantize")
    if not spec:
        return state, {}, items_t, {}
    from mmctr.compress.quant import QuantSpec, compact_state, narrow_ints, quantized_names

    spec = QuantSpec(**spec)
    state, meta = compact_state(state, quantized_names(model, spec))
    items_t, items_meta = compact_state(items_t, {"emb": spec.item_emb} if spec.item_emb else {})
    items_t, items_meta = narrow_ints(items_t, ["tags", "likes", "views"], items_meta)
    return state, meta, items_t, items_meta


def data_facts(data) -> dict[str, Any]:
    """What run.json records of the data a run was trained on (as `mmctr train` writes it)."""
    from mmctr.data.reader import data_fingerprint

    return {
        "data_root": str(data.layout.root),
        "item_info": data.items.source,
        "n_items": data.items.n_items,
        "n_tags": data.items.n_tags,
        "max_len": data.max_len,
        "data_fingerprint": data_fingerprint(data.layout.root),
    }


def save_run(
    out: Path,
    cfg: RunConfig,
    model: nn.Module,
    items: ItemTable,
    metrics: dict[str, Any],
    facts: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write the run into a temporary directory beside `out`, then rename it into place, so a
    crash never leaves a half-written run. An existing non-empty `out` is replaced only with
    `overwrite` and only when it is itself a run directory (`mmctr.outputs`)."""
    out = Path(out)
    check_out(out, RUN_DIR, overwrite)
    tmp = temp_beside(out)
    tmp.mkdir()
    try:
        (tmp / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        # a quantised run (`mmctr quantize`, facts["compress"]["quantize"]) stores its tables small
        state, meta, items_t, items_meta = _compacted(model, state, _items_tensors(items), facts)
        save_file(state, str(tmp / "model.safetensors"), metadata=meta or None)
        save_file(items_t, str(tmp / "items.safetensors"), metadata={"source": items.source, **items_meta})
        (tmp / "run.json").write_text(json.dumps({"mmctr_version": __version__, **facts}, indent=2))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        move_into_place(tmp, out, RUN_DIR, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# Runs saved before the per-row fields moved into RowContext (`model.context`) named them at the
# model's top level; they load under their new names.
_LEGACY_CONTEXT = ("likes_emb.", "views_emb.", "user_emb.")


def _renamed_legacy_keys(state: dict[str, Any]) -> dict[str, Any]:
    return {("context." + k if k.startswith(_LEGACY_CONTEXT) else k): v for k, v in state.items()}


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A damaged file of a run (truncated, edited, from another version) becomes an error naming it."""
    try:
        yield
    except MMCTRError as err:
        if str(path.parent if path.suffix else path) in str(err):
            raise
        raise MMCTRError(f"{path}: {err}") from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, yaml.YAMLError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MMCTRError(
            f"{path}: cannot be loaded ({type(err).__name__}: {first[:300]}); the run directory is damaged "
            "or from an incompatible version: train it again with `mmctr train`"
        ) from None


def _check_items(items: ItemTable) -> None:
    n = items.tags.shape[0] if items.tags.ndim == 2 else -1
    if items.tags.ndim != 2 or items.emb.ndim != 2 or items.emb.shape[0] != n:
        raise ValueError(
            f"tags {tuple(items.tags.shape)} and emb {tuple(items.emb.shape)} do not form an item table"
        )
    if items.likes.shape != (n,) or items.views.shape != (n,):
        raise ValueError(f"likes/views hold {items.likes.shape}/{items.views.shape} values for {n} items")
    if (
        items.tags.dtype.kind not in "iu"
        or items.likes.dtype.kind not in "iu"
        or items.views.dtype.kind not in "iu"
    ):
        raise ValueError("tags, likes and views must be integer tensors")
    if n < 1 or (items.tags < 0).any() or not torch.isfinite(torch.as_tensor(items.emb)).all():
        raise ValueError("negative tag ids or non-finite embeddings")


def _check_finite(state: dict[str, torch.Tensor]) -> None:
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"weight {name!r} holds NaN or infinite values")


def load_run(run: Path) -> tuple[RunConfig, nn.Module, dict[str, Any]]:
    """The run's config, its model with weights loaded (eval mode), and its facts."""
    run = Path(run)
    for name in ("config.yaml", "model.safetensors", "items.safetensors", "run.json"):
        if not (run / name).exists():
            raise MMCTRError(f"{run}: not a run directory ({name} missing); create one with `mmctr train`")
    with _reading(run / "config.yaml"):
        raw = yaml.safe_load((run / "config.yaml").read_text())
        cfg = from_dict(RunConfig, raw, f"{run / 'config.yaml'}")
    with _reading(run / "items.safetensors"):
        t = load_safetensors(run / "items.safetensors")  # expands a quantised run's tables
        items = ItemTable(
            t["tags"].numpy(),
            t["emb"].numpy(),
            t["likes"].numpy(),
            t["views"].numpy(),
            source=str(run / "items.safetensors"),
        )
        _check_items(items)
    with _reading(run):
        model = build_model(cfg, items)
    with _reading(run / "model.safetensors"):
        state = _renamed_legacy_keys(load_safetensors(run / "model.safetensors"))
        _check_finite(state)
        model.load_state_dict(state)
    model.eval()
    with _reading(run / "run.json"):
        facts = json.loads((run / "run.json").read_text())
        if not isinstance(facts, dict):
            raise ValueError(f"expected a JSON object, found {type(facts).__name__}")
    return cfg, model, facts
