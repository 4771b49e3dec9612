"""Task 2 CTR models: one plain nn.Module per file, one registry.

Every model takes `(config, items: ItemTable)`, has a `config_class` dataclass, and maps a `Batch`
to logits of shape (B,).
"""

from __future__ import annotations

from torch import nn

from mmctr.models.din import DIN
from mmctr.models.din_mhta import DINMHTA
from mmctr.models.qin import QIN
from mmctr.models.sasrec_dcn import SASRecDCN
from mmctr.models.transformer_dcn import TransformerDCN

MODELS: dict[str, type[nn.Module]] = {
    "din": DIN,
    "transformer_dcn": TransformerDCN,
    "din_mhta": DINMHTA,
    "sasrec_dcn": SASRecDCN,
    "qin": QIN,
}


def get_model_class(name: str) -> type[nn.Module]:
    from mmctr.errors import ConfigError

    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None
