"""The fast paths of the shared layers compute the same maths as the plain definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import as_if_trained, random_items
from mmctr.config import resolve_run_config
from mmctr.models.layers import BankDropout, TargetAttention, pack
from mmctr.serving import for_serving, request_batch, score_request, warm_up
from mmctr.training.run_dir import build_model


def _naive_attention(
    att: TargetAttention, q: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """DIN attention as usually written: an MLP over [q, k, q-k, q*k] at every padded slot, masked."""
    B, L, D = keys.shape
    qq = q.unsqueeze(1).expand(B, L, D)
    x = torch.cat([qq, keys, qq - keys, qq * keys], dim=-1)  # (B, L, 4D)
    h = torch.relu(att.first(x))
    s = att.out(att.rest(h)).squeeze(-1)  # (B, L)
    s = s * mask
    return (s.unsqueeze(-1) * keys).sum(1)  # (B, D)


def test_split_packed_attention_equals_concat_mlp():
    torch.manual_seed(0)
    att = TargetAttention(8, (16, 4)).eval()
    B, L = 5, 7
    hist = torch.randint(1, 50, (B, L))
    hist[0, :4] = 0  # left padding
    hist[3, :6] = 0
    keys_table = torch.randn(50, 8)
    keys_table[0] = 0
    q = torch.randn(B, 8)
    p = pack(hist)
    fast = att(q, keys_table[p.ids], p.rows)
    slow = _naive_attention(att, q, keys_table[hist], (hist > 0).float())
    assert torch.allclose(fast, slow, atol=1e-5)
    # one history shared by all rows: the request path
    shared = att.forward_shared(q, keys_table[hist[1]])
    slow1 = _naive_attention(att, q, keys_table[hist[1]].expand(B, L, 8), torch.ones(B, L))
    assert torch.allclose(shared, slow1, atol=1e-5)
    # candidates in chunks (here 1 or 2 per chunk) give the same result as one chunk
    for pairs in (1, 2 * L):
        assert torch.allclose(
            att.forward_shared(q, keys_table[hist[1]], pairs_per_chunk=pairs), slow1, atol=1e-5
        )
    # keys padded with rows past n_keys (any values) get no weight, with and without softmax
    k = keys_table[hist[1]]
    junk = torch.cat([k, torch.randn(5, 8)])
    assert torch.allclose(att.forward_shared(q, junk, n_keys=L), slow1, atol=1e-5)
    att.softmax = True
    assert torch.allclose(att.forward_shared(q, junk, n_keys=L), att.forward_shared(q, k), atol=1e-5)
    # no real position (an empty history): nothing pooled, with softmax too (not NaN)
    assert torch.equal(att.forward_shared(q, junk, n_keys=0), torch.zeros(B, 8))
    # the packed path's per-row softmax matches the request path row by row
    row1 = torch.full((B,), 1)
    packed_all = pack(hist[row1])
    assert torch.allclose(
        att(q, keys_table[packed_all.ids], packed_all.rows), att.forward_shared(q, k), atol=1e-5
    )


def test_din_request_path_equals_batch_path():
    n = 60
    model = as_if_trained(build_model(resolve_run_config("din"), random_items(n, seed=0)).eval())
    rng = np.random.default_rng(0)
    batch = request_batch(
        np.array([0, 0, 5, 9, 3]), rng.integers(1, n, 30), rng.integers(0, 11, 30), rng.integers(0, 11, 30)
    )
    with torch.inference_mode():
        assert torch.allclose(model(batch), model.forward_request(batch), atol=1e-5)
        # an fp32 serving copy indexes precomputed item tables instead of encoding: same answers
        tabled = for_serving(model)
        assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in tabled.modules())  # folded
        assert tabled.serving_tables is not None and model.serving_tables is None
        assert tabled.serve_hk.shape == (n, 512)
        assert torch.allclose(tabled.forward_request(batch), model.forward_request(batch), atol=1e-5)
        # a history of 13 items is padded to 16: the padding must not change the answer
        long = request_batch(rng.integers(1, n, 13), batch.item_id, batch.likes, batch.views)
        assert torch.allclose(model(long), tabled.forward_request(long), atol=1e-5)
    # the bf16 serving copy answers close to the fp32 model and leaves the model in fp32
    served = for_serving(model, bf16=True)
    assert next(served.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32
    p32 = score_request(model, batch)
    p16 = score_request(served, batch, bf16=True)
    assert p16.dtype == np.float32 and p16.shape == (30,)
    assert np.abs(p16 - p32).max() < 0.02
    assert np.corrcoef(p16, p32)[0, 1] > 0.99
    # a history cap: the served copy answers a 13-item request as the model answers its 4 most recent
    hist13 = rng.integers(1, n, 13)
    capped = for_serving(model, max_history=4)
    assert capped.max_history == 4 and served.max_history is None
    np.testing.assert_allclose(
        score_request(capped, request_batch(hist13, batch.item_id, batch.likes, batch.views)),
        score_request(model, request_batch(hist13[-4:], batch.item_id, batch.likes, batch.views)),
        atol=1e-5,
    )
    assert not np.allclose(  # and the cap did cut something
        score_request(capped, request_batch(hist13, batch.item_id, batch.likes, batch.views)),
        score_request(model, request_batch(hist13, batch.item_id, batch.likes, batch.views)),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="max_history"):
        for_serving(model, max_history=0)
    # warm-up scores one request per padded history length, and leaves the answers unchanged
    assert warm_up(served, candidates=30, max_len=16, bf16=True) == 2
    assert np.array_equal(score_request(served, batch, bf16=True), p16)


def test_bank_dropout_keeps_expectation_and_varies_by_row():
    torch.manual_seed(0)
    drop = BankDropout(0.25, bank_rows=512)
    x = torch.ones(4000, 64)
    y = drop(x)
    assert abs(y.mean().item() - 1.0) < 0.02  # inverted dropout keeps the mean
    assert abs((y == 0).float().mean().item() - 0.25) < 0.02
    assert not torch.equal(y[0], y[1]) or not torch.equal(y[1], y[2])  # rows get different masks
    drop.eval()
    assert torch.equal(drop(x), x)
    assert isinstance(nn.Sequential(drop), nn.Module)


def test_relu_sign_matches_relu_bit_for_bit():
    from mmctr.models.layers import relu_sign_

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        x = torch.randn(64, 33, generator=g).to(dtype)
        x[0, :4] = torch.tensor([-0.0, 0.0, float("-inf"), float("inf")]).to(dtype)
        want = torch.relu(x)
        got = relu_sign_(x.clone())
        assert got.dtype == dtype
        # equal as values, and as bits everywhere but at -0.0 (torch.relu keeps its sign; zero either way)
        assert torch.equal(got, want)
        same_bits = got.view(torch.uint8) == want.contiguous().view(torch.uint8)
        assert same_bits.view(64, 33, -1)[1:].all() and same_bits.view(64, 33, -1)[0, 1:].all()
        assert got[0, 0].item() == 0.0 and not torch.signbit(got[0, 0])
    # a non-contiguous view falls back to relu_ and still writes in place
    y = torch.randn(8, 8, generator=g)
    t = y.t()
    relu_sign_(t)
    assert (y >= 0).all()


@pytest.mark.parametrize("name", ["din_mhta", "qin", "transformer_dcn"])
def test_shared_history_request_path_equals_batch_path(name: str):
    """din_mhta, qin and transformer_dcn answer a request from its one history, encoded once and
    padded to a multiple of 8: the same logits as their batch path over N rows that repeat it,
    for histories that fill a bucket, do not, and are empty; and their serving copies warm up on the
    padded lengths only."""
    n = 60
    model = as_if_trained(build_model(resolve_run_config(name), random_items(n, seed=0)), 0).eval()
    rng = np.random.default_rng(0)
    targets, likes, views = rng.integers(1, n, 30), rng.integers(0, 11, 30), rng.integers(0, 11, 30)
    with torch.inference_mode():
        for length in (0, 3, 4, 8, 13, 64):
            batch = request_batch(rng.integers(1, n, length), targets, likes, views, user_id=7)
            torch.testing.assert_close(model.forward_request(batch), model(batch), atol=1e-5, rtol=1e-4)
    served = for_serving(model)
    assert warm_up(served, candidates=30, max_len=16) == 2
    batch = request_batch(rng.integers(1, n, 11), targets, likes, views)
    np.testing.assert_allclose(score_request(served, batch), score_request(model, batch), atol=1e-5)
