"""Knowledge distillation for Task 2: a cheap student trained on the labels plus a trained teacher's
logits.

The teacher is any trained run, or several (an ensemble, averaged in logit space: teachers only).
Per step the teacher scores the same batch under no_grad, and `distill_loss` adds
weight · T² · BCE(σ(s/T), σ(t/T)) to the label loss, where s and t are the student's and teacher's
logits and T the temperature (T² keeps the gradient's size independent of T, as in Hinton et al.).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmctr.errors import ConfigError


@dataclass
class DistillConfig:
    temperature: float = 1.0
    weight: float = 1.0  # of the teacher term, beside the label loss (weight 1)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"--temperature must be positive, got {self.temperature}")
        if self.weight < 0:
            raise ConfigError(f"--weight must be at least 0, got {self.weight}")


class Ensemble(nn.Module):
    """Mean logit of several trained models (a teacher only: it is never trained or saved)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(models)

    def forward(self, batch) -> torch.Tensor:
        return torch.stack([m(batch) for m in self.members]).mean(0)  # (B,)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_teacher(runs: list[Path]) -> tuple[nn.Module, list[dict[str, Any]]]:
    """The teacher (one run, or the ensemble of several) frozen in eval mode, and what run.json
    records of each: its path, model, the sha256 of its weights and its valid AUC."""
    import json

    from mmctr.training.run_dir import load_run

    if not runs:
        raise ConfigError("--teacher: give at least one run directory")
    models, facts = [], []
    for run in runs:
        cfg, model, _ = load_run(Path(run))
        metrics_path = Path(run) / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        models.append(model)
        facts.append(
            {
                "run": str(run),
                "model": cfg.model,
                "model_sha256": file_sha256(Path(run) / "model.safetensors"),
                "valid_auc": metrics.get("valid_auc"),
            }
        )
    teacher = models[0] if len(models) == 1 else Ensemble(models)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, facts


def distill_loss(
    teacher: nn.Module, cfg: DistillConfig
) -> Callable[[nn.Module, torch.Tensor, Any], torch.Tensor]:
    """The `extra_loss` of `mmctr.training.loop.train`: the teacher term for a student's logits."""
    T = cfg.temperature

    def extra(model: nn.Module, logits: torch.Tensor, batch) -> torch.Tensor:
        with torch.no_grad():
            target = torch.sigmoid(teacher(batch).float() / T)  # (B,)
        return cfg.weight * T * T * F.binary_cross_entropy_with_logits(logits / T, target)

    return extra


def distill(
    student_cfg,
    data,
    teacher_runs: list[Path],
    cfg: DistillConfig,
    progress: bool = True,
    log=print,
):
    """Train `student_cfg.model` on `data` with the teacher term; returns (TrainResult, facts for
    run.json's `compress.distill`)."""
    from mmctr.training.loop import train

    teacher, teachers = load_teacher(teacher_runs)
    result = train(student_cfg, data, progress=progress, log=log, extra_loss=distill_loss(teacher, cfg))
    return result, {"teachers": teachers, **asdict(cfg)}
