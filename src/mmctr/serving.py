"""Online scoring: one request = one user's history and N candidate items.

`make_requests` builds the requests every latency measurement uses (`mmctr bench`, its `--serving`
mode and the load test's bodies) from valid rows.

`score_request` is what serving and the latency benchmark call. Models that define
`forward_request(batch)` (the DIN, din_mhta, qin, transformer_dcn) get the history side computed
once per request; others fall back to a plain batch of N rows that share the history.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from mmctr.data.batches import Batch

if TYPE_CHECKING:
    from mmctr.data.reader import Dataset


@dataclasses.dataclass
class Request:
    """One online request: one user's history and N candidate items with their levels."""

    hist: np.ndarray  # (max_len,) int, left zero-padded, most recent last
    targets: np.ndarray  # (N,) int64 item ids
    likes: np.ndarray  # (N,) int64
    views: np.ndarray  # (N,) int64
    row: int = -1  # the valid row it was made from: its first candidate is that row's target


def make_requests(
    data: Dataset, n: int, candidates: int, seed: int, rows: np.ndarray | None = None
) -> list[Request]:
    """`n` requests from real valid rows: that row's history and target, plus `candidates − 1`
    other items drawn uniformly from the catalogue with their own levels. Seeded, so every system
    scores the same requests. `rows`: the valid rows to draw from (default: all)."""
    valid, items = data["valid"], data.items
    rng = np.random.default_rng(seed)
    pool = np.arange(len(valid)) if rows is None else np.asarray(rows)
    rows = rng.choice(pool, size=n, replace=n > len(pool))
    out = []
    for r in rows:
        others = rng.integers(1, items.n_items, size=candidates - 1)
        targets = np.concatenate([[valid.item_id[r]], others]).astype(np.int64)
        likes = np.concatenate([[valid.likes[r]], items.likes[others]]).astype(np.int64)
        views = np.concatenate([[valid.views[r]], items.views[others]]).astype(np.int64)
        out.append(Request(valid.hist[r].copy(), targets, likes, views, row=int(r)))
    return out


def request_batch(
    hist: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    likes: np.ndarray | torch.Tensor | None = None,
    views: np.ndarray | torch.Tensor | None = None,
    user_id: int = 0,
) -> Batch:
    """A batch of N rows sharing one history. `hist` is the user's history (most recent last; zeros
    are dropped), `targets` the N candidate item ids, `likes`/`views` their levels."""
    h = torch.as_tensor(np.asarray(hist), dtype=torch.long)
    h = h[h > 0]
    if h.numel() == 0:
        h = torch.zeros(1, dtype=torch.long)
    t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    n = t.shape[0]
    lv = (
        torch.zeros(n, dtype=torch.long)
        if likes is None
        else torch.as_tensor(np.asarray(likes), dtype=torch.long)
    )
    vv = (
        torch.zeros(n, dtype=torch.long)
        if views is None
        else torch.as_tensor(np.asarray(views), dtype=torch.long)
    )
    return Batch(
        user_id=torch.full((n,), user_id, dtype=torch.long),
        hist=h.unsqueeze(0).expand(n, -1),
        item_id=t,
        likes=lv,
        views=vv,
        label=torch.zeros(n),
    )


def for_serving(
    model: nn.Module, bf16: bool = False, pack: bool = True, max_history: int | None = None
) -> nn.Module:
    """An eval-mode copy of `model` to answer requests with; the trained model is left as it is.

    - Batch norms are folded into the linears before them (`fold_batch_norm`).
    - A model with `prepare_serving` (the DIN) gets its item-side work done once for every item, so
      that a request only indexes it.
    - With `bf16` the weights and item table are cast to bf16 once, so that no request pays
      autocast's cast of every weight on every call (15% of a bf16 request's time when profiled);
      `mmctr bench` measures the AUC this costs (`valid_auc_serving`).
    - With `pack` (where oneDNN is available) the linears' weights are reordered for oneDNN once and
      their ReLUs fused (`pack_linears`).
    - With `max_history` = K, `score_request` keeps each request's K most recent history items (the
      organisers' pipeline itself keeps the most recent 64). A request's cost grows with its
      history, so this bounds the slowest requests; `mmctr bench --serving RUN` measures the AUC it
      costs (`cap_history` gives the same cut for a whole split)."""
    if max_history is not None and max_history < 1:
        raise ValueError(f"max_history must be at least 1, got {max_history}")
    served = copy.deepcopy(model).eval()
    served.max_history = max_history
    fold_batch_norm(served)
    if hasattr(served, "prepare_serving"):  # item-side tables, computed in the weights' own precision
        served.prepare_serving()
    if bf16:
        served = served.to(torch.bfloat16)
    if pack:
        pack_linears(served)
    return served


def fold_batch_norm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm1d that directly follows a Linear in an nn.Sequential (the MLPs)
    into that Linear's weights: same answers, one pass over the activations fewer per layer. For
    serving copies only: the folded model no longer trains as before. Returns how many it folded."""
    from torch.nn.utils.fusion import fuse_linear_bn_eval

    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Linear) and isinstance(seq[i + 1], nn.BatchNorm1d):
                seq[i] = fuse_linear_bn_eval(seq[i].eval(), seq[i + 1].eval())
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded


@functools.cache
def _can_pack(dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN packs and runs a linear of this dtype here. bf16 needs AVX-512 (BW/VL/DQ) or
    AVX-NE-CONVERT: an AMD EPYC without them refuses to reorder a bf16 weight, so probe once."""
    ops = getattr(torch.ops, "mkldnn", None)
    if not (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    ):
        return False
    try:
        w = torch.ops.mkldnn._reorder_linear_weight(torch.zeros(8, 8, dtype=dtype), 8)
        torch.ops.mkldnn._linear_pointwise(torch.zeros(2, 8, dtype=dtype), w, None, "none", [], "")
    except RuntimeError:
        return False
    return True


class PackedLinear(nn.Module):
    """A Linear for inference whose weight oneDNN reordered into its own blocked layout once, with
    the ReLU that follows it optionally fused into the same call. Eager `F.linear` reorders the
    weight on every call: on this machine's bf16 (1,008 × 512) → 256 layer + ReLU that was 893 µs a
    call, 737 µs fused, and 343 µs fused on the packed weight. Built by `pack_linears` on a serving
    copy, after its final dtype is set (the packed weight is an opaque oneDNN tensor that `.to()`
    does not convert and `state_dict` does not hold)."""

    def __init__(self, linear: nn.Linear, relu: bool = False, rows_hint: int = 1024):
        super().__init__()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows_hint)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()
        self.attr = "relu" if relu else "none"
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.in_features)
        if x.dtype != self.packed.dtype:  # e.g. an fp32 copy scored under bf16 autocast
            x = x.to(self.packed.dtype)
        y = torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, self.attr, [], "")
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features} → {self.out_features}, fused: {self.attr}"


def pack_linears(model: nn.Module) -> int:
    """Replace each nn.Linear called as a module by a PackedLinear; inside an nn.Sequential (the
    MLPs) the ReLU that follows it (after folded batch norms, now Identity) is fused in. The DIN
    attention's first layer stays: its weight is read in parts. (Its per-pair part, packed with the
    add fused by `_linear_pointwise.binary`, answered 3-6% slower than `addmm_` on the plain weight.)
    Inference only; returns how many weights were packed (0 where oneDNN is missing)."""
    from mmctr.models.layers import TargetAttention

    packed = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear) or (isinstance(parent, TargetAttention) and name == "first"):
                continue
            if not _can_pack(child.weight.dtype):
                continue
            relu = False
            if isinstance(parent, nn.Sequential):
                i = int(name)
                j = i + 1
                while j < len(parent) and isinstance(parent[j], nn.Identity):
                    j += 1
                relu = j < len(parent) and isinstance(parent[j], nn.ReLU)
                if relu:
                    parent[j] = nn.Identity()
            setattr(parent, name, PackedLinear(child, relu=relu))
            packed += 1
    return packed


def _is_bf16(model: nn.Module) -> bool:
    p = next(model.parameters(), None)
    return p is not None and p.dtype == torch.bfloat16


def cap_history(rows, max_history: int | None):
    """`rows` (a `Batch`, or a `SplitArrays` split) with each left-padded history (most recent last)
    cut to its `max_history` most recent positions; `rows` itself where `max_history` is None or
    the histories are no longer."""
    if max_history is None or rows.hist.shape[-1] <= max_history:
        return rows
    return dataclasses.replace(rows, hist=rows.hist[..., -max_history:])


@torch.inference_mode()
def score_request(model: nn.Module, batch: Batch, bf16: bool = False) -> np.ndarray:
    """Click probabilities for the N candidates of one request. `bf16` runs fp32 weights under bf16
    autocast; a model from `for_serving(model, bf16=True)` already runs in bf16; one from
    `for_serving(..., max_history=K)` sees the request's K most recent history items."""
    model.eval()
    batch = cap_history(batch, getattr(model, "max_history", None))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and not _is_bf16(model)):
        if hasattr(model, "forward_request"):
            logits = model.forward_request(batch)
        else:
            logits = model(batch)
    return torch.sigmoid(logits.float()).numpy()


def warm_up(model: nn.Module, candidates: int = 100, max_len: int = 64, bf16: bool = False) -> int:
    """Score one dummy request per history length a model's request path can meet, so that the
    kernels oneDNN compiles per shape (for the packed linears) exist before the first real request;
    without it the first request of each new shape waits several ms for them. A model with
    `forward_request` (the DIN, din_mhta, qin, transformer_dcn) pads histories to a multiple of
    REQUEST_BUCKET, so it meets `max_len / REQUEST_BUCKET` shapes; the others (sasrec_dcn) meet each
    length from 1 to `max_len`. Unwarmed, the first request at a new length took 1.17-1.82x as long
    as the next one (medians over lengths; 1-4 ms more) for sasrec_dcn, and for the other three
    before they had their own request path, in fp32 on a Xeon. Shapes also depend on the candidate
    count: warm up with the one the requests will have. Run it with the thread count the requests
    will use (`torch.set_num_threads`): oneDNN's kernels depend on it, and a copy warmed on 2
    threads then serving on 1 had twice the p50 and p99. Returns how many requests it scored.
    Item 1 stands in for every item."""
    from mmctr.models.layers import REQUEST_BUCKET

    b = REQUEST_BUCKET
    if hasattr(model, "forward_request"):
        lengths = range(b, max_len + b, b)
    elif any(isinstance(m, PackedLinear) for m in model.modules()):
        lengths = range(1, max_len + 1)
    else:  # no per-shape kernels to build: one request loads the weights into the caches
        lengths = [max_len]
    for n in lengths:
        score_request(model, request_batch(np.ones(n, np.int64), np.ones(candidates, np.int64)), bf16)
    return len(lengths)
