"""What one benchmark run measures, written as JSON for the per-system subprocesses.

Only dataclasses and the standard library here: this module is imported by children that run in a
peer's own interpreter (FuxiCTR's venv), which has torch and numpy but not all of mmctr's extras.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Peer systems the harness knows; each runs in its own subprocess, possibly another interpreter.
PEERS = ("deepctr-torch", "fuxictr")
# the serving copies `mmctr bench --serving` compares (mmctr.bench.serving)
SERVING_OPTIONS = ("fp32", "bf16", "bf16-unpacked", "int8-dynamic", "ort-fp32", "ort-int8")
# bf16 joins the default only where its matmuls are at least as fast as fp32's (`bf16_is_fast`:
# AMX CPUs). A Xeon with AVX-512 BF16 but no AMX runs them at half fp32's rate; a CPU without
# AVX-512 ~100x slower, where scoring the valid split alone takes many minutes
DEFAULT_SERVING_OPTIONS = ("fp32", "int8-dynamic", "ort-fp32", "ort-int8")
# `mmctr/<model>@<variant>`: variants change precision only.
VARIANTS = ("bf16", "fp32")
# `mmctr/<model>+<technique>`: post-training weight quantisation of the trained model (`mmctr
# quantize` schemes, mmctr.compress.quant.TECHNIQUES), stored small in the saved run; several add up.
TECHNIQUES = ("int8emb", "int4emb", "int8lin", "int8")


@dataclass
class Hparams:
    """The hyperparameters every DIN in the comparison gets (defaults: the organisers' baseline,
    replaced at run time by mmctr's own configs/din.yaml so the two cannot drift apart)."""

    embedding_dim: int = 64
    dnn_hidden: list[int] = field(default_factory=lambda: [1024, 512, 256])
    attention_hidden: list[int] = field(default_factory=lambda: [512, 256])
    attention_dropout: float = 0.1
    net_dropout: float = 0.1
    batch_norm: bool = True
    embedding_reg: float = 1e-6
    lr: float = 1e-3
    batch_size: int = 8192
    max_len: int = 64


@dataclass
class BenchSettings:
    data: str  # data root in the MMCTR layout
    hparams: Hparams = field(default_factory=Hparams)
    epochs: int = 1  # training budget for valid AUC (every system gets the same)
    measure_auc: bool = True  # False: timing only (repeat runs)
    warmup_steps: int = 3
    timed_steps: int = 10
    candidates: int = 100  # N items scored per request
    requests: int = 300
    warmup_requests: int = 20
    eval_batch_size: int = 8192  # batch throughput on the valid split
    seed: int = 2025
    threads: int = 0  # training / batch-scoring threads; 0 = torch's default
    max_train_rows: int = 0  # > 0: only the first rows of train (quick runs, tests); 0 = all
    work_dir: str = ""  # where a system may write checkpoints or a feature map

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> BenchSettings:
        d = json.loads(text)
        return cls(**{**d, "hparams": Hparams(**d.get("hparams", {}))})


@dataclass
class SystemSpec:
    """One system to measure, e.g. `mmctr/din@bf16`, `deepctr-torch/din`, `fuxictr/din`."""

    system: str
    family: str  # "mmctr" or one of PEERS
    model: str
    variant: str = ""
    python: str = ""  # the interpreter its subprocess runs in
    params: dict = field(default_factory=dict)  # model_params overrides, from `din[key=value,...]`
    techniques: list = field(default_factory=list)  # from `din+int8emb`: see TECHNIQUES

    @classmethod
    def parse(cls, name: str, python: str = "") -> SystemSpec:
        """FAMILY/MODEL[@VARIANT]; our models also take MODEL[key=value,...] (values in JSON) and
        +TECHNIQUE suffixes, e.g. `mmctr/din[attention_hidden=[128,64]]@bf16`,
        `mmctr/din[from=RUNS/student]+int8emb@fp32` (`from=RUN`: a trained run directory, e.g. a
        distilled or pruned one, measured instead of a model trained by the bench)."""
        family, sep, rest = name.partition("/")
        if not sep or not rest:
            raise ValueError(f"system {name!r}: expected FAMILY/MODEL[@VARIANT], e.g. mmctr/din@bf16")
        params: dict = {}
        if "[" in rest:
            model, _, tail = rest.partition("[")
            inner, close, variant_part = tail.rpartition("]")
            if not close or (variant_part and variant_part[0] not in "@+"):
                raise ValueError(f"system {name!r}: expected MODEL[key=value,...][+TECHNIQUE][@VARIANT]")
            params = _parse_params(name, inner)
            rest = model + variant_part
        rest, _, variant = rest.partition("@")
        model, *techniques = rest.split("+")
        unknown = [t for t in techniques if t not in TECHNIQUES]
        if unknown:
            raise ValueError(
                f"system {name!r}: unknown technique {unknown[0]!r}; known: {', '.join(TECHNIQUES)}"
            )
        if family != "mmctr" and family not in PEERS:
            raise ValueError(f"system {name!r}: unknown family {family!r}; known: mmctr, {', '.join(PEERS)}")
        if variant and variant not in VARIANTS:
            raise ValueError(f"system {name!r}: unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        if family != "mmctr" and (model != "din" or variant):
            raise ValueError(f"system {name!r}: peers are measured as {family}/din only")
        if family != "mmctr" and (params or techniques):
            raise ValueError(f"system {name!r}: peers take no model parameters or techniques")
        if "from" in params:  # absolute: the system's subprocess may run elsewhere
            run = Path(str(params["from"])).expanduser().resolve()
            if not (run / "run.json").exists():
                raise ValueError(
                    f"system {name!r}: from={params['from']} is not a run directory (no run.json)"
                )
            params["from"] = str(run)
        return cls(
            system=name,
            family=family,
            model=model,
            variant=variant,
            python=python,
            params=params,
            techniques=techniques,
        )


def _parse_params(name: str, inner: str) -> dict:
    """`a=1,b=[2,3]` → {"a": 1, "b": [2, 3]}: split at commas that start a new `key=`."""
    out = {}
    for item in filter(None, re.split(r",(?=\s*\w+=)", inner)):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"system {name!r}: {item!r} is not key=value")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()  # a bare string
    return out


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, default=float))
