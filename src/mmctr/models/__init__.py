"""Task 2 CTR models: one plain nn.Module per file, one registry.

The contract every registered model meets (`check_contract`, tested for each):
- `config_class`: the dataclass of its `model_params` (unknown keys are errors);
- `__init__(config, items: ItemTable)`;
- `forward(batch: Batch) -> (B,)` logits;
- `embedding_tables() -> list[nn.Embedding]`: the tables the training loop's `embedding_reg`
  (L2 on embeddings) applies to. A model must say which they are; there is no silent default.
- optional `fit_counts(train: SplitArrays)`: counts taken from the train split before the first
  step (`mmctr.training.loop.prepare_model`), kept as buffers.
"""

from __future__ import annotations

from torch import nn

from mmctr.models.din import DIN
from mmctr.models.din_mhta import DINMHTA
from mmctr.models.lr import LR
from mmctr.models.pop import Pop
from mmctr.models.pop_user import PopUser
from mmctr.models.qin import QIN
from mmctr.models.sasrec_dcn import SASRecDCN
from mmctr.models.svdpp import SVDpp
from mmctr.models.transformer_dcn import TransformerDCN

# The counting baselines come first: every table shows what counting alone gets.
MODELS: dict[str, type[nn.Module]] = {
    "pop": Pop,
    "pop_user": PopUser,
    "lr": LR,
    "din": DIN,
    "transformer_dcn": TransformerDCN,
    "din_mhta": DINMHTA,
    "sasrec_dcn": SASRecDCN,
    "qin": QIN,
    "svdpp": SVDpp,
}


# Models that read no history (counts and a linear model): baselines, not CTR networks.
BASELINES = ("pop", "pop_user", "lr")

REQUIRED = ("config_class", "forward", "embedding_tables")


def check_contract(name: str, cls: type) -> None:
    """Raise TypeError naming what a model class lacks of the contract above."""
    missing = [attr for attr in REQUIRED if not callable(getattr(cls, attr, None)) and attr != "config_class"]
    if getattr(cls, "config_class", None) is None:
        missing.insert(0, "config_class")
    if missing:
        raise TypeError(f"model {name!r} ({cls.__name__}) lacks {', '.join(missing)}: see mmctr.models")


def get_model_class(name: str) -> type[nn.Module]:
    from mmctr.errors import ConfigError

    try:
        cls = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None
    check_contract(name, cls)
    return cls
