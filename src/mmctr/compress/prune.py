"""Structured pruning: whole hidden units of a model's MLPs removed by magnitude, then fine-tuned;
and modality ablation (which of id, tags, embedding, levels a trained model uses).

A pruned model is an ordinary model with narrower layers: `prune_units` returns a config whose
hidden sizes are the kept widths (e.g. DIN dnn_hidden [1024, 512, 256] → [512, 256, 128]) and a
model of that config holding the kept weights, so `load_run` rebuilds it from config.yaml alone and
every later step (predict, serve, bench) sees a smaller model, not a masked one.

A unit's score is the size of the path through it: ‖incoming weight row‖ · |batch-norm gain / σ|
(when a batch norm follows) · ‖outgoing weight column‖. The lowest-scoring units of each layer go.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from mmctr.errors import ConfigError


@dataclass
class Group:
    """A chain of Linear layers whose hidden units can be pruned: the Linear module names in order,
    the config key listing their widths, and the Linear that consumes the last one's output (at
    input column `offset`)."""

    config_key: str
    linears: list[str]
    consumer: str
    offset: int = 0


def _mlp_linears(model: nn.Module, name: str) -> list[str]:
    seq = model.get_submodule(name)
    return [f"{name}.{i}" for i, m in enumerate(seq) if isinstance(m, nn.Linear)]


def prunable_groups(model: nn.Module, cfg) -> dict[str, Group]:
    """The groups of `model` that `prune_units` knows (by the model's registry name)."""
    if cfg.model == "din":
        groups = {"dnn": Group("dnn_hidden", _mlp_linears(model, "dnn"), "head")}
        if model.cfg.use_history:
            rest = _mlp_linears(model, "attention.rest")
            groups["attention"] = Group("attention_hidden", ["attention.first", *rest], "attention.out")
        return groups
    if cfg.model == "transformer_dcn":
        in_dim = model.cross.dim
        return {
            "dnn": Group("dnn_hidden", _mlp_linears(model, "dnn"), "head_mlp.0", offset=in_dim),
            "head": Group("head_hidden", _mlp_linears(model, "head_mlp"), "head"),
        }
    raise ConfigError(f"pruning: model {cfg.model!r} is not supported; prunable models: din, transformer_dcn")


def _following_norm(model: nn.Module, linear: str) -> str | None:
    parent, _, idx = linear.rpartition(".")
    if not idx.isdigit():
        return None
    seq = model.get_submodule(parent)
    nxt = int(idx) + 1
    if isinstance(seq, nn.Sequential) and nxt < len(seq) and isinstance(seq[nxt], nn.BatchNorm1d):
        return f"{parent}.{nxt}"
    return None


@torch.no_grad()
def unit_scores(model: nn.Module, group: Group) -> list[torch.Tensor]:
    """One score per hidden unit of each Linear of `group`."""
    out = []
    chain = [*group.linears, group.consumer]
    for i, name in enumerate(group.linears):
        w = model.get_submodule(name).weight  # (H, in)
        score = w.norm(dim=1)
        bn_name = _following_norm(model, name)
        if bn_name is not None:
            bn = model.get_submodule(bn_name)
            score = score * (bn.weight.abs() / (bn.running_var + bn.eps).sqrt())
        nxt = model.get_submodule(chain[i + 1]).weight
        off = group.offset if chain[i + 1] == group.consumer else 0
        score = score * nxt[:, off : off + w.shape[0]].norm(dim=0)
        out.append(score)
    return out


def _kept(scores: torch.Tensor, keep: float) -> torch.Tensor:
    k = max(1, int(round(keep * scores.numel())))
    return scores.topk(k).indices.sort().values


@torch.no_grad()
def prune_units(model: nn.Module, cfg, keep: dict[str, float], items):
    """A narrower copy of `model`: in each group named in `keep` (e.g. {"dnn": 0.5, "attention":
    0.5}) each hidden layer keeps that share of its units, the highest-scoring. Returns (model,
    config, {group: [old widths, new widths]})."""
    from mmctr.training.run_dir import build_model

    groups = prunable_groups(model, cfg)
    for g, share in keep.items():
        if g not in groups:
            raise ConfigError(
                f"pruning: {cfg.model} has no prunable group {g!r}; it has: {', '.join(groups)}"
            )
        if not 0 < share <= 1:
            raise ConfigError(f"pruning {g}: the share of units to keep must be in (0, 1], got {share}")
    out_idx: dict[str, torch.Tensor] = {}  # module name → kept output units
    in_idx: dict[str, tuple[torch.Tensor, int, int]] = {}  # consumer → (kept columns, offset, old width)
    params = copy.deepcopy(cfg.model_params)
    widths = {}
    for g, share in keep.items():
        group = groups[g]
        kept = [_kept(s, share) for s in unit_scores(model, group)]
        chain = [*group.linears, group.consumer]
        for i, name in enumerate(group.linears):
            out_idx[name] = kept[i]
            bn = _following_norm(model, name)
            if bn is not None:
                out_idx[bn] = kept[i]
            off = group.offset if chain[i + 1] == group.consumer else 0
            in_idx[chain[i + 1]] = (kept[i], off, model.get_submodule(name).out_features)
        old = [model.get_submodule(n).out_features for n in group.linears]
        params[group.config_key] = [len(k) for k in kept]
        widths[g] = [old, params[group.config_key]]
    new_cfg = dataclasses.replace(cfg, model_params=params)
    state = {}
    for key, t in model.state_dict().items():
        mod, _, leaf = key.rpartition(".")
        if mod in in_idx and leaf == "weight":
            # the producer's units are columns [off, off + width) of this layer's input; the
            # columns around them (the transformer's cross-network output) stay
            idx, off, width = in_idx[mod]
            cols = torch.cat([torch.arange(off), idx + off, torch.arange(off + width, t.shape[1])])
            t = t[:, cols]
        if mod in out_idx and leaf != "num_batches_tracked":
            t = t.index_select(0, out_idx[mod])
        state[key] = t.clone()
    pruned = build_model(new_cfg, items)
    pruned.load_state_dict(state)  # strict: every weight of the narrower model comes from `model`
    return pruned.train(model.training), new_cfg, widths


# ----------------------------------------------------------------------------------------------
# cross layers: low rank


@torch.no_grad()
def prune_cross_rank(model: nn.Module, cfg, rank: int, items):
    """A copy of a DCNv2 model (transformer_dcn, sasrec_dcn) whose cross weights W (dim × dim) are
    each replaced by their best rank-`rank` approximation, U·V with U = P·√S and V = √S·Qᵀ from the
    truncated SVD W = P S Qᵀ; every other weight is copied. Returns (model, config, facts) where
    facts has each layer's share of ‖W‖² that the kept singular values hold."""
    from mmctr.training.run_dir import build_model

    cross = getattr(model, "cross", None)
    if cross is None or not hasattr(cross, "rank"):
        raise ConfigError(
            f"--cross-rank: model {cfg.model!r} has no cross network; models with one: transformer_dcn, "
            "sasrec_dcn"
        )
    if cross.rank:
        raise ConfigError(f"--cross-rank: this run's cross layers are already rank {cross.rank}")
    if not 1 <= rank < cross.dim:
        raise ConfigError(
            f"--cross-rank {rank}: must be from 1 to {cross.dim - 1} (the layers are {cross.dim} wide)"
        )
    params = copy.deepcopy(cfg.model_params)
    params["cross_rank"] = rank
    new_cfg = dataclasses.replace(cfg, model_params=params)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("cross.")}
    kept = []
    for i, layer in enumerate(cross.layers):
        p, s, qt = torch.linalg.svd(layer.weight.double(), full_matrices=False)
        root = s[:rank].sqrt()
        state[f"cross.layers.{i}.0.weight"] = (root[:, None] * qt[:rank]).float()  # V: (rank, dim)
        state[f"cross.layers.{i}.1.weight"] = (p[:, :rank] * root[None, :]).float()  # U: (dim, rank)
        state[f"cross.layers.{i}.1.bias"] = layer.bias.clone()
        kept.append(float((s[:rank] ** 2).sum() / (s**2).sum()))
    pruned = build_model(new_cfg, items)
    pruned.load_state_dict(state)  # strict: every weight comes from `model` or its SVD
    old = sum(layer.weight.numel() for layer in cross.layers)
    new = sum(m.weight.numel() for layer in pruned.cross.layers for m in layer)
    facts = {"rank": rank, "dim": cross.dim, "energy_kept": kept, "cross_weights": [old, new]}
    return pruned.train(model.training), new_cfg, facts


# ----------------------------------------------------------------------------------------------
# modalities

MODALITIES = ("id", "tags", "embedding", "levels")


@torch.no_grad()
def without_modality(model: nn.Module, modality: str) -> nn.Module:
    """A copy of a trained model that no longer sees one input: its weights for it zeroed (the item
    id or tag tables, the projection of the frozen embedding, or the likes/views level tables)."""
    m = copy.deepcopy(model).eval()
    items = getattr(m, "items", None)
    if items is None:
        raise ConfigError(
            f"modality ablation needs a model with an item encoder; {type(model).__name__} has none"
        )
    if modality == "id":
        items.id_emb.weight.zero_()
    elif modality == "tags":
        if items.tag_emb is not None:
            items.tag_emb.weight.zero_()
    elif modality == "embedding":
        items.proj.weight.zero_()
    elif modality == "levels":
        for mod in (m.context, items):
            for name in ("likes_emb", "views_emb"):
                if hasattr(mod, name):
                    getattr(mod, name).weight.zero_()
    else:
        raise ConfigError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    return m


def modality_ablation(model: nn.Module, split, batch_size: int = 16384) -> dict[str, float]:
    """Valid AUC of the model as it is ("all") and with each modality removed in turn."""
    from mmctr.training.loop import predict_split
    from mmctr.training.metrics import auc

    out = {"all": auc(split.label, predict_split(model, split, batch_size))}
    for modality in MODALITIES:
        p = predict_split(without_modality(model, modality), split, batch_size)
        out[modality] = auc(split.label, p)
    return out
