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
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from mmctr import __version__
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
        save_file(state, str(tmp / "model.safetensors"))
        save_file(_items_tensors(items), str(tmp / "items.safetensors"), metadata={"source": items.source})
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


def load_run(run: Path) -> tuple[RunConfig, nn.Module, dict[str, Any]]:
    """The run's config, its model with weights loaded (eval mode), and its facts."""
    run = Path(run)
    for name in ("config.yaml", "model.safetensors", "items.safetensors", "run.json"):
        if not (run / name).exists():
            raise MMCTRError(f"{run}: not a run directory ({name} missing); create one with `mmctr train`")
    raw = yaml.safe_load((run / "config.yaml").read_text())
    cfg = from_dict(RunConfig, raw, f"{run / 'config.yaml'}")
    t = load_file(str(run / "items.safetensors"))
    items = ItemTable(
        t["tags"].numpy(),
        t["emb"].numpy(),
        t["likes"].numpy(),
        t["views"].numpy(),
        source=str(run / "items.safetensors"),
    )
    model = build_model(cfg, items)
    model.load_state_dict(_renamed_legacy_keys(load_file(str(run / "model.safetensors"))))
    model.eval()
    facts = json.loads((run / "run.json").read_text())
    return cfg, model, facts
