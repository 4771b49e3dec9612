"""Typed configuration: dataclasses filled from small YAML files; an unknown key is an error that
names it."""

from __future__ import annotations

import dataclasses
import math
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


# Ranges of the training options: (lowest, highest, lowest excluded). A value outside fails at
# load time with the key's name, not minutes later inside the training loop.
_TRAIN_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, 10.0, True),
    "batch_size": (1, 2**31 - 1, False),
    "eval_batch_size": (1, 2**31 - 1, False),
    "epochs": (0, 1_000_000, False),
    "patience": (0, 1_000_000, False),
    "lr_decay": (0.0, 1.0, True),
    "lr_patience": (0, 1_000_000, False),
    "min_lr": (0.0, 10.0, False),
    "embedding_reg": (0.0, 1e6, False),
    "net_reg": (0.0, 1e6, False),
    "pairwise_weight": (0.0, 1e6, False),
    "max_len": (1, 100, False),  # the files' item_seq holds 100 items
    "seed": (0, 2**63 - 1, False),
    "threads": (0, 4096, False),
    "max_steps": (0, 2**62, False),
}
# Model parameters: every size (an int, or a list of ints such as hidden widths) is at least 1 and at
# most this, except the ones below; every float is finite, a dropout lies in [0, 1).
_MAX_SIZE = 1 << 20
_SIZE_RANGES: dict[str, tuple[int, int]] = {
    "cross_layers": (0, 64),
    "cross_rank": (0, 1 << 16),
    "user_buckets": (1, 1 << 24),
}


def _check_range(cls: type, key: str, value: Any, where: str) -> None:
    def refuse(what: str) -> None:
        raise ConfigError(f"{where}: {value!r} is out of range; expected {what}")

    if isinstance(value, float) and not math.isfinite(value):
        refuse("a finite number")
    if cls.__name__ == "TrainConfig":
        if key in _TRAIN_RANGES and not isinstance(value, bool):
            lo, hi, open_lo = _TRAIN_RANGES[key]
            if value < lo or value > hi or (open_lo and value == lo):
                refuse(f"{'more than' if open_lo else 'at least'} {lo} and at most {hi}")
        return
    if isinstance(value, bool):
        return
    if "dropout" in key and isinstance(value, (int, float)) and not 0 <= value < 1:
        refuse("a dropout probability in [0, 1)")
    ints = [value] if isinstance(value, int) else value if isinstance(value, list) else []
    if ints and all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        lo, hi = _SIZE_RANGES.get(key, (1, _MAX_SIZE))
        if any(not lo <= v <= hi for v in ints):
            refuse(f"{'sizes' if isinstance(value, list) else 'a size'} from {lo} to {hi}")
    if isinstance(value, list):
        for v in value:
            if isinstance(v, float) and not math.isfinite(v):
                refuse("finite numbers")


def from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from `data`, checking keys, basic types and ranges; nested dataclasses too."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(names))}")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
        _check_range(cls, key, kwargs[key], f"{where}.{key}")
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
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; --config takes a YAML file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); expected YAML"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a configuration") from None
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
            # checked source by source, so that an error names the file it is in
            if key == "train":
                from_dict(TrainConfig, value, f"{path}: train")
            else:
                from_dict(model_cls.config_class, value, f"{path}: model_params ({model})")
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
