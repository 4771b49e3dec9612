"""Typed configuration: dataclasses filled from small YAML files; an unknown key is an error that
names it."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmctr.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TrainConfig:
    lr: float = 1e-3
    batch_size: int = 8192
    eval_batch_size: int = 16384
    epochs: int = 100
    patience: int = 3  # early stop after this many epochs without a better valid AUC
    lr_decay: float = 0.1  # reduce-on-plateau factor
    lr_patience: int = 1  # epochs without improvement before the LR is reduced
    min_lr: float = 1e-6
    embedding_reg: float = 1e-6  # L2 on embedding tables (the baseline's embedding_regularizer)
    net_reg: float = 0.0
    pairwise_weight: float = 0.0  # > 0 mixes an in-batch pairwise (BPR-style) loss with BCE
    max_len: int = 64  # most recent history items kept
    seed: int = 2025
    threads: int = 0  # 0: torch's default
    bf16: bool = False  # bf16 autocast for the forward/backward (AMX CPUs, GPUs)
    max_steps: int = 0  # > 0 stops after this many steps (smoke tests)


@dataclass
class RunConfig:
    model: str = "din"
    model_params: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)


def from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from `data`, checking keys and basic types; nested dataclasses too."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(names))}")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return data or {}


def default_config_path(model: str) -> Path:
    return CONFIG_DIR / f"{model}.yaml"


def resolve_run_config(
    model: str, config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """The model's defaults from configs/<model>.yaml, then the user's file, then overrides."""
    from mmctr.models import get_model_class

    model_cls = get_model_class(model)
    merged: dict[str, Any] = {"model": model, "model_params": {}, "train": {}}
    sources = (
        [(default_config_path(model), load_yaml(default_config_path(model)))]
        if default_config_path(model).exists()
        else []
    )
    if config_file is not None:
        sources.append((Path(config_file), load_yaml(Path(config_file))))
    if overrides:
        sources.append((Path("<command line>"), overrides))
    for path, data in sources:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        for key, value in data.items():
            if key not in ("model", "model_params", "train"):
                raise ConfigError(f"{path}: unknown key {key!r}; known keys: model, model_params, train")
            if key == "model":
                if value != model:
                    raise ConfigError(f"{path}: is for model {value!r}, but --model is {model!r}")
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {key} must be a mapping")
            merged[key].update(value)
    cfg = RunConfig(
        model=model,
        model_params=merged["model_params"],
        train=from_dict(TrainConfig, merged["train"], "train"),
    )
    from_dict(model_cls.config_class, cfg.model_params, f"model_params ({model})")  # validate now
    return cfg


def model_config(cfg: RunConfig) -> Any:
    from mmctr.models import get_model_class

    cls = get_model_class(cfg.model).config_class
    return from_dict(cls, cfg.model_params, f"model_params ({cfg.model})")


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return asdict(cfg)
