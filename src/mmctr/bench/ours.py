"""mmctr's own models as benchmark systems: configured from their YAML defaults, with the shared
training hyperparameters (lr, batch, epochs, history length, embedding L2) taken from the bench so
every system gets the same; scored through `mmctr.serving` exactly as serving does."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from mmctr.bench.spec import BenchSettings, SystemSpec
from mmctr.config import RunConfig, resolve_run_config
from mmctr.data.batches import Batch, iter_batches
from mmctr.data.reader import Dataset
from mmctr.serving import Request

# keys of `mmctr/model[key=value,...]` that configure the serving copy, not the model
SERVING_KEYS = ("max_history",)
# `from=RUN`: measure a trained run directory (distilled, pruned, ...) instead of training the model
RUN_KEYS = ("from",)


def bench_config(spec: SystemSpec, settings: BenchSettings) -> RunConfig:
    """The model's own config with the bench's shared training settings; the variant sets precision."""
    hp = settings.hparams
    train = {
        "lr": hp.lr,
        "batch_size": hp.batch_size,
        "eval_batch_size": settings.eval_batch_size,
        "max_len": hp.max_len,
        "embedding_reg": hp.embedding_reg,
        "epochs": settings.epochs,
        "patience": settings.epochs + 1,  # a fixed budget: no early stop inside it
        "seed": settings.seed,
        "threads": settings.threads,
    }
    if spec.variant:
        train["bf16"] = spec.variant == "bf16"
    model_params = {k: v for k, v in spec.params.items() if k not in SERVING_KEYS + RUN_KEYS}
    if "from" in spec.params:  # the run's own model_params, then any given beside `from`
        model_params = {**_run_config(spec).model_params, **model_params}
    return resolve_run_config(spec.model, None, {"train": train, "model_params": model_params})


def _run_config(spec: SystemSpec) -> RunConfig:
    import yaml

    from mmctr.config import from_dict
    from mmctr.errors import ConfigError

    run = Path(spec.params["from"])
    if not (run / "config.yaml").exists():
        raise ConfigError(f"system {spec.system}: from={run} is not a run directory (config.yaml missing)")
    cfg = from_dict(RunConfig, yaml.safe_load((run / "config.yaml").read_text()), str(run / "config.yaml"))
    if cfg.model != spec.model:
        raise ConfigError(
            f"system {spec.system}: {run} is a {cfg.model} run; name it mmctr/{cfg.model}[from=...]"
        )
    return cfg


class MMCTRSystem:
    def __init__(self, spec: SystemSpec, data: Dataset, settings: BenchSettings):
        self.cfg = bench_config(spec, settings)
        self.data = data
        self.bf16 = self.cfg.train.bf16
        self.run = spec.params.get("from")  # a trained run to measure; None: the bench trains the model
        self.quant = None
        if spec.techniques:
            from mmctr.compress.quant import QuantSpec

            self.quant = QuantSpec.from_techniques(spec.techniques)
        self.precision = "bf16" if self.bf16 else "fp32"
        mp = self.cfg.model_params
        # `max_history=K`: the system serves each request from its K most recent history items
        # (`for_serving(max_history=K)`), and its valid AUC is measured on histories cut the same way
        self.max_history = spec.params.get("max_history")
        cap = f"; served and scored on the {self.max_history} most recent" if self.max_history else ""
        made = f"; trained run {self.run} (loaded, not trained by the bench)" if self.run else ""
        quant = f"; weights stored as {'+'.join(spec.techniques)}" if spec.techniques else ""
        self.inputs = (
            f"target item (id + tags + projected item_emb_d128) + likes/views levels; history of "
            f"≤{data.max_len} items packed to real positions{cap}; model_params {mp}{made}{quant}"
        )
        self.model: torch.nn.Module | None = None
        self.served: torch.nn.Module | None = None  # the model's serving copy (bf16 weights for @bf16)

    def reset(self, seed: int) -> None:
        from mmctr.training.loop import prepare_model, seed_everything
        from mmctr.training.run_dir import build_model

        seed_everything(seed)
        if self.run:
            self.model = self._load()
        else:
            self.model = prepare_model(build_model(self.cfg, self.data.items), self.data["train"])
        self.served = None
        tc = self.cfg.train
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc.lr, weight_decay=tc.net_reg)
        self.rng = np.random.default_rng(seed)

    def n_params(self) -> tuple[int, int]:
        n = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        frozen_buffers = sum(b.numel() for b in self.model.buffers() if b.is_floating_point())
        return trainable, n + frozen_buffers

    def train_batches(self) -> Iterator[Batch]:
        return iter_batches(self.data["train"], self.cfg.train.batch_size, shuffle=True, rng=self.rng)

    def batch_rows(self, batch: Batch) -> int:
        return len(batch)

    def train_step(self, batch: Batch) -> None:
        # The inner step of mmctr.training.loop.train, line for line (keep the two in step).
        from mmctr.training.loop import loss_fn

        self.model.train()
        tc = self.cfg.train
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=tc.bf16):
            logits = self.model(batch).float()
        loss = loss_fn(self.model, logits, batch, tc)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        loss.item()

    def fit(self, epochs: int) -> None:
        from mmctr.training.loop import train

        cfg = dataclasses.replace(self.cfg, train=dataclasses.replace(self.cfg.train, epochs=epochs))
        if self.run:
            self.model = self._load()
        else:
            self.model = train(cfg, self.data, progress=False, log=lambda *a, **k: None).model
        if self.quant is not None:  # post-training: the weights as the quantised run stores them
            from mmctr.compress.quant import quantize_model

            quantize_model(self.model, self.quant)
        self.served = None

    def _load(self) -> torch.nn.Module:
        from mmctr.training.run_dir import load_run

        return load_run(Path(self.run))[1]

    def predict_valid(self, batch_size: int) -> np.ndarray:
        from mmctr.training.loop import predict_split

        return predict_split(self.model, self._valid(), batch_size, self.bf16)

    def _valid(self):
        from mmctr.serving import cap_history

        return cap_history(self.data["valid"], self.max_history)

    def serving_model(self) -> torch.nn.Module:
        from mmctr.serving import for_serving

        if self.served is None:
            self.served = for_serving(self.model, bf16=self.bf16, max_history=self.max_history)
            self.warm = False
        return self.served

    def predict_valid_serving(self, batch_size: int) -> np.ndarray:
        """The valid split scored by the serving copy: what serving in bf16 costs in AUC."""
        from mmctr.training.loop import predict_split

        return predict_split(self.serving_model(), self._valid(), batch_size, bf16=False)

    def score_request(self, req: Request) -> np.ndarray:
        from mmctr.serving import request_batch, score_request, warm_up

        served = self.serving_model()
        if not self.warm:
            # As a server does at start, on the thread count its requests run with (the first
            # request's): oneDNN builds a kernel per shape for the threads it sees then, and a copy
            # warmed on 2 threads answered 1-thread requests in 20-26 ms p99 instead of 9.2-9.4 ms.
            warm_up(served, max_len=self.data.max_len, bf16=self.bf16)
            self.warm = True
        batch = request_batch(req.hist, req.targets, req.likes, req.views)
        return score_request(served, batch, bf16=self.bf16)

    def save(self, out: Path) -> Path:
        # a run directory: config, learned weights, and the item table the model looks up
        from mmctr.training.run_dir import save_run

        facts = {"compress": {"quantize": self.quant.to_dict()}} if self.quant is not None else {}
        save_run(out, self.cfg, self.model, self.data.items, metrics={}, facts=facts)
        return out / "model.safetensors"
