"""The DIN under ONNX Runtime: an option for serving, measured beside the PyTorch serving copies by
`mmctr bench --serving RUN` (AUC and request latency).

A served DIN (`mmctr.serving.for_serving`, fp32, not packed) is exported twice, with its item-side
tables (item vectors and the attention's per-item target and key parts) as initialisers:

- `request`: N candidates against ONE history of any length L (every position real), the user side
  computed once, as `DIN.forward_request` does;
- `batch`: B rows with their own zero-padded histories (B, L), padded positions masked, for scoring
  a whole split (the AUC).

`OrtDIN` wraps the two sessions as a module with `forward(batch)` and `forward_request(batch)`, so
that `score_request` and `predict_split` take it like any model. Needs the `ort` extra
(onnxruntime, onnx, onnxscript); `quantize="int8"` adds ONNX Runtime's dynamic int8 quantisation of
the MatMuls.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from mmctr.data.batches import Batch


def _require_din(model: nn.Module) -> None:
    if getattr(model, "serving_tables", None) is None or not hasattr(model, "attention"):
        raise TypeError(
            "ONNX export takes a DIN serving copy with its item tables: "
            "mmctr.serving.for_serving(din_model, bf16=False, pack=False)"
        )
    if getattr(model.context, "user_emb", None) is not None:
        raise TypeError("ONNX export: a DIN with use_user_id is not supported (the graphs take no user id)")
    if next(model.parameters()).dtype != torch.float32:
        raise TypeError("ONNX export takes an fp32 serving copy (for_serving(..., bf16=False))")


class _Head(nn.Module):
    """What follows the pooled history: the DNN over [target, pooled, context] and the logit."""

    def __init__(self, din: nn.Module):
        super().__init__()
        self.din = din

    def logits(self, target, pooled, likes, views):
        ctx = self.din.context(SimpleNamespace(likes=likes, views=views))
        h = self.din.dnn(torch.cat([target, pooled, *ctx], dim=-1))
        return self.din.head(h).squeeze(-1)

    def pair_scores(self, ids, q, k, hk):
        """Raw attention scores (B, L) of targets `ids` / q (B, D) against keys k and their key parts
        hk, (B or 1, L, D) and (B or 1, L, H): the first layer split as in TargetAttention."""
        att, t = self.din.attention, self.din.serving_tables
        wp = att.first.weight[:, 3 * att.dim :]
        h1 = (q.unsqueeze(1) * k) @ wp.t() + t["hq"][ids].unsqueeze(1) + hk  # (B, L, H)
        return att.out(att.rest(torch.relu(h1))).squeeze(-1)


class _RequestGraph(_Head):
    def forward(self, ids, hist, likes, views):  # (N,), (L,), (N,), (N,)
        t = self.din.serving_tables
        q, k = t["items"][ids], t["items"][hist]  # (N, D), (L, D)
        s = self.pair_scores(ids, q, k.unsqueeze(0), t["hk"][hist].unsqueeze(0))  # (N, L)
        if self.din.attention.softmax:
            s = torch.softmax(s, dim=-1)
        return self.logits(q, s @ k, likes, views)


class _BatchGraph(_Head):
    def forward(self, ids, hist, likes, views):  # (B,), (B, L) zero-padded, (B,), (B,)
        att, t = self.din.attention, self.din.serving_tables
        q, k = t["items"][ids], t["items"][hist]  # (B, D), (B, L, D)
        s = self.pair_scores(ids, q, k, t["hk"][hist])  # (B, L)
        real = hist > 0
        if att.softmax:
            s = torch.softmax(s.masked_fill(~real, float("-inf")), dim=-1).nan_to_num(0.0)
        else:
            s = s * real.to(s.dtype)
        pooled = (s.unsqueeze(-1) * k).sum(1)  # (B, D)
        return self.logits(q, pooled, likes, views)


def export_din(served: nn.Module, path: str | Path, form: str = "request") -> Path:
    """Write the served DIN's `form` graph ("request" or "batch") to `path` as one self-contained
    ONNX file (written to a temp name, then renamed)."""
    import logging

    _require_din(served)
    graph = {"request": _RequestGraph, "batch": _BatchGraph}[form](served).eval()
    n, L = 7, 5
    ids = torch.arange(1, n + 1)
    hist = torch.arange(1, L + 1) if form == "request" else torch.arange(1, L + 1).repeat(n, 1)
    lv = torch.zeros(n, dtype=torch.long)
    N, H = torch.export.Dim("n", min=1), torch.export.Dim("history", min=1)
    shapes = {
        "ids": {0: N},
        "hist": {0: H} if form == "request" else {0: N, 1: H},
        "likes": {0: N},
        "views": {0: N},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            prog = torch.onnx.export(
                graph,
                (ids, hist, lv, lv.clone()),  # two objects: one passed twice became one graph input
                input_names=["ids", "hist", "likes", "views"],
                output_names=["logits"],
                dynamic_shapes=shapes,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        prog.save(tmp, external_data=False)
        os.replace(tmp, path)
    finally:
        onnx_log.setLevel(level)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _quantize_int8(path: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of the graph at `path`, written beside it. The
    exporter's recorded intermediate shapes are dropped first: the quantiser re-infers shapes and
    stopped at a conflict between the two (512 vs 1024 in the DNN)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    bare = path.with_name(path.stem + ".noshapes.onnx")
    out = path.with_name(path.stem + ".int8.onnx")
    onnx.save(model, str(bare))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process, printed on every call
    try:
        quantize_dynamic(str(bare), str(out.with_suffix(".tmp")), weight_type=QuantType.QInt8)
        os.replace(out.with_suffix(".tmp"), out)
    finally:
        root.setLevel(level)
        bare.unlink(missing_ok=True)
        out.with_suffix(".tmp").unlink(missing_ok=True)
    return out


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OrtDIN(nn.Module):
    """A DIN answered by ONNX Runtime (CPU). Build it from a trained DIN with `OrtDIN.from_model`.
    `threads` is ONNX Runtime's intra-op thread count (its own pool; torch's setting does not reach
    it)."""

    def __init__(self, request_path: Path, batch_path: Path, threads: int = 1):
        super().__init__()
        self.paths = (Path(request_path), Path(batch_path))
        self.threads = threads
        self._request = _session(self.paths[0], threads)
        self._batch = _session(self.paths[1], threads)

    @classmethod
    def from_model(
        cls, model: nn.Module, workdir: str | Path, threads: int = 1, quantize: str | None = None
    ) -> OrtDIN:
        """Export `model` (a trained DIN) into `workdir` and open it. `quantize="int8"` runs ONNX
        Runtime's dynamic quantisation (int8 weights, activations quantised per call) on both
        graphs."""
        from mmctr.serving import for_serving

        if quantize not in (None, "int8"):
            raise ValueError(f"quantize: {quantize!r} is not one of None, 'int8'")
        served = for_serving(model, bf16=False, pack=False)
        workdir = Path(workdir)
        paths = [export_din(served, workdir / f"din_{form}.onnx", form) for form in ("request", "batch")]
        if quantize == "int8":
            paths = [_quantize_int8(p) for p in paths]
        return cls(*paths, threads=threads)

    @staticmethod
    def _feeds(batch: Batch, hist: np.ndarray) -> dict[str, np.ndarray]:
        # contiguous copies where needed: a request's history rows are one expanded (stride-0)
        # tensor, and ONNX Runtime reads an input's buffer as if it were C-contiguous
        arrays = {"ids": batch.item_id, "hist": hist, "likes": batch.likes, "views": batch.views}
        return {k: np.ascontiguousarray(np.asarray(v), dtype=np.int64) for k, v in arrays.items()}

    def forward_request(self, batch: Batch) -> torch.Tensor:
        h = batch.hist[0].numpy()
        h = h[h > 0]
        if h.size == 0:  # no history: the batch graph, whose padded positions get no weight
            return self.forward(batch)
        (logits,) = self._request.run(None, self._feeds(batch, h))
        return torch.from_numpy(logits)

    def forward(self, batch: Batch) -> torch.Tensor:
        (logits,) = self._batch.run(None, self._feeds(batch, batch.hist))
        return torch.from_numpy(logits)
