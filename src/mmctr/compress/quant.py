"""Weight quantisation with one scale per row: embedding tables (and the frozen item embedding) in
int8 or 4-bit, linear weights in int8, for the bytes a run takes on disk.

A row w of a table becomes q = round(w / s) with s = max|w| / qmax (qmax 127 for int8, 7 for 4-bit),
and is read back as q · s: every value within s/2 of the original. The quantisation is applied to a
model in place (`quantize_model`: its weights become exactly what a saved and reloaded run holds),
and `compact_state` / `expand_state` write and read the small form, so `load_run` gives the same
model and prediction, serving and benchmarks run on it unchanged. Compute stays fp32: this is about
storage. Quantisation-aware fine-tuning (`fake_quantize`) trains through the rounding with a
straight-through gradient where post-training rounding costs AUC.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from mmctr.errors import ConfigError

BITS = (0, 4, 8)  # 0: left in fp32
QMAX = {8: 127, 4: 7}
# how the names of `mmctr bench` systems spell them: `mmctr/din+int8emb`, `+int4emb`, `+int8lin`, `+int8`
TECHNIQUES = {
    "int8emb": {"embeddings": 8, "item_emb": 8},
    "int4emb": {"embeddings": 4, "item_emb": 4},
    "int8lin": {"linears": 8},
    "int8": {"embeddings": 8, "item_emb": 8, "linears": 8},
}
SUFFIX_Q, SUFFIX_SCALE = ".__q", ".__scale"  # safetensors keys of a compacted tensor
META_KEY = "mmctr_quant"  # safetensors metadata: {name: {"bits": b, "shape": [...]}}


@dataclass
class QuantSpec:
    """Bits per kind of weight; 0 leaves that kind in fp32."""

    embeddings: int = 0  # the learned nn.Embedding tables (item ids, tags, levels, users, positions)
    item_emb: int = 0  # the frozen multimodal item embedding (items.safetensors)
    linears: int = 0  # weights of nn.Linear layers (per output unit)

    def __post_init__(self) -> None:
        for name in ("embeddings", "item_emb", "linears"):
            if getattr(self, name) not in BITS:
                raise ConfigError(f"quantisation {name}: {getattr(self, name)} bits; choose one of {BITS}")
        if self.linears == 4:
            raise ConfigError("quantisation linears: 4 bits is not supported; use 8 (or 0)")

    @property
    def active(self) -> bool:
        return any((self.embeddings, self.item_emb, self.linears))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_techniques(cls, names: list[str]) -> QuantSpec:
        """`["int4emb", "int8lin"]` → QuantSpec(embeddings=4, item_emb=4, linears=8)."""
        merged: dict[str, int] = {}
        for n in names:
            if n not in TECHNIQUES:
                raise ConfigError(f"unknown quantisation {n!r}; known: {', '.join(TECHNIQUES)}")
            merged.update(TECHNIQUES[n])
        return cls(**merged)


# ----------------------------------------------------------------------------------------------
# one table


def quantize_rows(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """w (n, d) float → (q (n, d) int8 in [-qmax, qmax], scale (n,) float32)."""
    qmax = QMAX[bits]
    w = w.detach().float()
    scale = w.abs().amax(dim=1) / qmax  # (n,)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row (padding) stays zero
    q = torch.round(w / safe.unsqueeze(1)).clamp(-qmax, qmax).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.unsqueeze(1)  # (n, d)


def round_trip(w: torch.Tensor, bits: int) -> torch.Tensor:
    """What a table of `bits` holds for w: dequantize_rows(quantize_rows(w))."""
    return dequantize_rows(*quantize_rows(w, bits)).to(w.dtype)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """q (n, d) int8 in [-7, 7] → (n, ceil(d/2)) uint8, two values a byte (offset by 8)."""
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    if u.shape[1] % 2:
        u = torch.cat([u, torch.full_like(u[:, :1], 8)], dim=1)
    return u[:, 0::2] | (u[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor, d: int) -> torch.Tensor:
    lo, hi = packed & 0x0F, packed >> 4
    u = torch.stack([lo, hi], dim=2).reshape(packed.shape[0], -1)[:, :d]
    return u.to(torch.int8) - 8


# ----------------------------------------------------------------------------------------------
# which weights of a model


def quantized_names(model: nn.Module, spec: QuantSpec) -> dict[str, int]:
    """state_dict keys of `model` that `spec` quantises → bits."""
    out: dict[str, int] = {}
    for prefix, m in model.named_modules():
        key = f"{prefix}.weight" if prefix else "weight"
        if isinstance(m, nn.Embedding) and spec.embeddings:
            out[key] = spec.embeddings
        elif isinstance(m, nn.Linear) and spec.linears:
            out[key] = spec.linears
    return out


@torch.no_grad()
def quantize_model(model: nn.Module, spec: QuantSpec) -> nn.Module:
    """Round `model`'s weights (and its frozen item embedding) in place to what `spec` stores, so
    that the model scores exactly as the run saved from it will after `load_run`."""
    state = model.state_dict()
    for key, bits in quantized_names(model, spec).items():
        state[key].copy_(round_trip(state[key], bits))
    if spec.item_emb:
        for m in model.modules():
            if isinstance(getattr(m, "item_emb", None), torch.Tensor):
                m.item_emb.copy_(round_trip(m.item_emb, spec.item_emb))
    return model


# ----------------------------------------------------------------------------------------------
# the small form on disk


def compact_state(
    state: dict[str, torch.Tensor], bits_by_name: dict[str, int]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A state dict with each named 2-D tensor replaced by its int8 (or packed 4-bit) values and
    per-row scales; returns it with the safetensors metadata `expand_state` reads back."""
    out = dict(state)
    meta: dict[str, dict] = {}
    for key, bits in bits_by_name.items():
        w = out.pop(key)
        if w.dim() != 2:
            raise ValueError(f"{key}: only 2-D tensors are quantised per row, got shape {tuple(w.shape)}")
        q, scale = quantize_rows(w, bits)
        out[key + SUFFIX_Q] = pack_int4(q) if bits == 4 else q
        out[key + SUFFIX_SCALE] = scale
        meta[key] = {"bits": bits, "shape": list(w.shape)}
    return out, ({META_KEY: json.dumps(meta)} if meta else {})


def narrow_ints(
    state: dict[str, torch.Tensor], keys: list[str], metadata: dict[str, str]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Integer tensors (an item table's tags and levels) stored in the smallest integer type that
    holds their values, losslessly; `expand_state` casts them back."""
    out = dict(state)
    meta = json.loads(metadata.get(META_KEY, "{}"))
    for key in keys:
        t = out[key]
        lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
        for dtype in (torch.uint8, torch.int16, torch.int32):
            info = torch.iinfo(dtype)
            if info.min <= lo and hi <= info.max and dtype.itemsize < t.element_size():
                out[key] = t.to(dtype)
                meta[key] = {"cast": str(t.dtype).removeprefix("torch.")}
                break
    return out, ({**metadata, META_KEY: json.dumps(meta)} if meta else metadata)


def expand_state(state: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> dict[str, torch.Tensor]:
    """The fp32 state dict of a compacted one (a state dict without quantised tensors is returned
    as it is)."""
    meta = json.loads((metadata or {}).get(META_KEY, "{}"))
    if not meta:
        return state
    out = dict(state)
    for key, info in meta.items():
        if "cast" in info:
            out[key] = out[key].to(getattr(torch, info["cast"]))
            continue
        q, scale = out.pop(key + SUFFIX_Q), out.pop(key + SUFFIX_SCALE)
        if info["bits"] == 4:
            q = unpack_int4(q, info["shape"][1])
        out[key] = dequantize_rows(q, scale)
    return out


def load_safetensors(path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, compacted ones expanded to fp32."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    return expand_state(load_file(str(path)), metadata)


# ----------------------------------------------------------------------------------------------
# quantisation-aware fine-tuning


class FakeQuant(nn.Module):
    """A parametrization: the weight as its `bits` table holds it in the forward pass, with the
    gradient passed straight through to the fp32 weight underneath."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (round_trip(w, self.bits) - w).detach()


def fake_quantize(model: nn.Module, spec: QuantSpec) -> list[nn.Module]:
    """Put a FakeQuant on every weight `spec` quantises (the frozen item embedding is rounded once:
    it does not train). Returns the modules, for `remove_fake_quant` after fine-tuning."""
    names = quantized_names(model, spec)
    modules = dict(model.named_modules())
    done = []
    for key, bits in names.items():
        m = modules[key.rpartition(".")[0]]
        parametrize.register_parametrization(m, "weight", FakeQuant(bits))
        done.append(m)
    if spec.item_emb:
        quantize_model(model, QuantSpec(item_emb=spec.item_emb))
    return done


def remove_fake_quant(modules: list[nn.Module]) -> None:
    """Fold each FakeQuant into its weight (the weight becomes its rounded value)."""
    for m in modules:
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


def run_bytes(run) -> int:
    """Bytes of a run's weights and item table on disk (model.safetensors + items.safetensors)."""
    from pathlib import Path

    return sum((Path(run) / n).stat().st_size for n in ("model.safetensors", "items.safetensors"))
