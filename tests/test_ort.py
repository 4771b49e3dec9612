"""The DIN exported to ONNX Runtime answers as the PyTorch serving copy does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import as_if_trained, random_items
from mmctr.config import resolve_run_config
from mmctr.serving import for_serving, request_batch, score_request
from mmctr.training.run_dir import build_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _din(softmax: bool = False) -> tuple[nn.Module, int]:
    n = 40
    cfg = resolve_run_config("din", overrides={"model_params": {"attention_softmax": softmax}})
    return as_if_trained(build_model(cfg, random_items(n, seed=1)).eval()), n


@pytest.mark.parametrize("softmax", [False, True])
def test_onnx_runtime_din_matches_torch(tmp_path, softmax):
    from mmctr.ort import OrtDIN

    model, n = _din(softmax)
    ort_model = OrtDIN.from_model(model, tmp_path, threads=1)
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["din_batch.onnx", "din_request.onnx"]
    assert not list(tmp_path.glob("*.tmp*"))  # written through temp names, none left behind
    rng = np.random.default_rng(0)
    served = for_serving(model)
    # requests with different history lengths (one graph, dynamic L), distinct likes and views
    # (an export that passed one tensor for both made the views' lookup read the likes), and none
    for length in (0, 1, 6, 13):
        req = request_batch(
            rng.integers(1, n, length),
            rng.integers(1, n, 25),
            rng.integers(0, 11, 25),
            rng.integers(0, 11, 25),
        )
        want = score_request(served, req)
        got = score_request(ort_model, req)
        assert got.shape == (25,)
        np.testing.assert_allclose(got, want, atol=1e-5)
    # the batch graph: rows with their own zero-padded histories
    hist = torch.as_tensor(rng.integers(1, n, (12, 9)))
    hist[:, :4] = torch.where(torch.rand(12, 4) < 0.5, 0, hist[:, :4])  # left padding of varied length
    hist[3] = 0  # a row with no history
    from mmctr.data.batches import Batch

    batch = Batch(
        user_id=torch.zeros(12, dtype=torch.long),
        hist=hist,
        item_id=torch.as_tensor(rng.integers(1, n, 12)),
        likes=torch.as_tensor(rng.integers(0, 11, 12)),
        views=torch.as_tensor(rng.integers(0, 11, 12)),
        label=torch.zeros(12),
    )
    with torch.inference_mode():
        np.testing.assert_allclose(ort_model(batch).numpy(), model(batch).numpy(), atol=1e-4)


def test_onnx_export_refuses_what_it_cannot_export(tmp_path):
    from mmctr.ort import OrtDIN, export_din

    model, _ = _din()
    with pytest.raises(TypeError, match="serving copy"):
        export_din(model, tmp_path / "x.onnx")  # no item tables yet
    with pytest.raises(TypeError, match="fp32"):
        export_din(for_serving(model, bf16=True, pack=False), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="quantize"):
        OrtDIN.from_model(model, tmp_path, quantize="int4")
    assert not list(tmp_path.glob("*.onnx"))


def test_onnx_runtime_int8_is_close_to_fp32(tmp_path):
    from mmctr.ort import OrtDIN

    model, n = _din()
    q = OrtDIN.from_model(model, tmp_path, quantize="int8")
    assert all(p.name.endswith(".int8.onnx") for p in q.paths)
    rng = np.random.default_rng(2)
    req = request_batch(
        rng.integers(1, n, 7), rng.integers(1, n, 30), rng.integers(0, 11, 30), rng.integers(0, 11, 30)
    )
    want, got = score_request(for_serving(model), req), score_request(q, req)
    assert not np.array_equal(got, want)  # it did quantise
    assert np.abs(got - want).max() < 0.05 and np.corrcoef(got, want)[0, 1] > 0.9
