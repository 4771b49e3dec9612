"""Efficiency techniques for trained runs, one file each: distillation (`distill`), structured and
modality pruning (`prune`), weight quantisation (`quant`). Each ends in an ordinary run directory
that `load_run`, `mmctr predict`, `mmctr serve` and `mmctr bench` use unchanged; run.json's
`compress` entry records how it was made."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from mmctr.compress.quant import QuantSpec


def source_facts(run: Path) -> dict[str, Any]:
    """How run.json names the run a compressed one was made from."""
    from mmctr.compress.distill import file_sha256

    return {"run": str(run), "model_sha256": file_sha256(Path(run) / "model.safetensors")}


def run_data(run_facts: dict[str, Any], data: Path | None, what: str) -> Path:
    """--data, or else the data root the run was trained on."""
    from mmctr.errors import ConfigError

    if data is not None:
        return Path(data)
    root = run_facts.get("data_root")
    if not root or not Path(root).exists():
        raise ConfigError(f"{what}: the run's data root {root!r} is not here; pass --data")
    return Path(root)


class Source:
    """A trained run to compress, loaded with the data it is measured and fine-tuned on."""

    def __init__(self, run: Path, data_root: Path | None, splits: tuple[str, ...]):
        import json

        from mmctr.data.reader import load_dataset
        from mmctr.errors import MMCTRError
        from mmctr.training.loop import predict_split
        from mmctr.training.metrics import auc
        from mmctr.training.run_dir import load_run

        self.run = Path(run)
        if not (self.run / "run.json").exists():
            raise MMCTRError(
                f"--run {run}: not a run directory (run.json missing); train one with `mmctr train`"
            )
        self.cfg, self.model, self.facts = load_run(self.run)
        root = run_data(self.facts, data_root, f"--run {run}")
        self.data = load_dataset(root, max_len=self.cfg.train.max_len, splits=splits)
        self.items = run_items(self.run)
        self.valid_auc = auc(self.data["valid"].label, predict_split(self.model, self.data["valid"]))
        self.source_metrics = json.loads((self.run / "metrics.json").read_text())

    def finetune_config(self, args, epochs: int, base=None):
        """The run's config (or `base`) with the fine-tuning settings of the command line: `epochs`
        epochs, no early stop inside them, lr / 10 unless --lr is given."""
        import dataclasses

        cfg = base or self.cfg
        tc = cfg.train
        changes = {"epochs": max(epochs, 1), "patience": max(epochs, 1) + 1, "lr": args.lr or tc.lr / 10}
        for name in ("seed", "batch_size", "threads"):
            if getattr(args, name, None) is not None:
                changes[name] = getattr(args, name)
        return dataclasses.replace(cfg, train=dataclasses.replace(tc, **changes))


def run_items(run: Path):
    """The item table a run directory stores (its own, whatever the data root now holds)."""
    from mmctr.compress.quant import load_safetensors
    from mmctr.data.reader import ItemTable

    t = load_safetensors(Path(run) / "items.safetensors")
    return ItemTable(
        t["tags"].numpy(), t["emb"].numpy(), t["likes"].numpy(), t["views"].numpy(), source=str(run)
    )


def load_source(run: Path, data_root: Path | None, splits: tuple[str, ...]) -> Source:
    return Source(run, data_root, splits)


def save_derived(
    out: Path, src: Source, cfg, model, compress: dict[str, Any], overwrite: bool
) -> dict[str, Any]:
    """Write the compressed `model` as a run directory beside what `src` recorded; run.json's
    `compress` keeps what the source run was made by (a distillation, a pruning; a quantisation only
    when this step quantises again) and names the source run. Returns the metrics written."""
    from mmctr.training.loop import predict_split, truth_metrics
    from mmctr.training.metrics import auc, logloss
    from mmctr.training.run_dir import save_run

    valid = src.data["valid"]
    p = predict_split(model, valid)
    metrics = {
        "model": cfg.model,
        "valid_auc": auc(valid.label, p),
        "valid_logloss": logloss(valid.label, p),
        "source_valid_auc": src.valid_auc,
        "params": sum(t.numel() for t in model.parameters()),
        **truth_metrics(src.data, p),
    }
    inherited = {k: v for k, v in src.facts.get("compress", {}).items() if k not in ("quantize", "source")}
    facts = {k: v for k, v in src.facts.items() if k not in ("mmctr_version", "compress")}
    facts["compress"] = {**inherited, **compress, "source": source_facts(src.run)}
    save_run(out, cfg, model, src.items, metrics, facts, overwrite=overwrite)
    return metrics


def quantize_run_model(
    model: nn.Module, spec: QuantSpec, cfg, data, qat_epochs: int = 0, progress: bool = True
):
    """`model` quantised by `spec`, after `qat_epochs` of quantisation-aware fine-tuning (config
    `cfg`) when > 0. Returns (model, facts for run.json: the fine-tuning's settings)."""
    from mmctr.compress.quant import fake_quantize, quantize_model, remove_fake_quant
    from mmctr.training.loop import train

    if qat_epochs <= 0:
        return quantize_model(model, spec), {}

    wrapped = fake_quantize(model, spec)
    model = train(cfg, data, progress=progress, model=model.train()).model
    remove_fake_quant(wrapped)
    quantize_model(model, spec)
    return model.eval(), {"qat": {"epochs": qat_epochs, "lr": cfg.train.lr, "seed": cfg.train.seed}}
