"""Every registered CTR model: trains, round-trips through a run directory, reads its history through
the right mask, honours the shared feature options, and rejects unknown config keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmctr.config import RunConfig, TrainConfig, resolve_run_config
from mmctr.data.batches import Batch, make_batch
from mmctr.data.reader import ItemTable, SplitArrays
from mmctr.errors import ConfigError
from mmctr.models import BASELINES, MODELS
from mmctr.training.loop import loss_fn, prepare_model
from mmctr.training.run_dir import build_model, load_run, save_run

N_ITEMS, N_ROWS, MAX_LEN = 60, 40, 16


@pytest.fixture(scope="module")
def items() -> ItemTable:
    rng = np.random.default_rng(0)
    tags = np.zeros((N_ITEMS, 5), dtype=np.int32)
    for i in range(1, N_ITEMS):
        k = rng.integers(1, 6)
        tags[i, 5 - k :] = rng.integers(1, 30, size=k)  # left zero-padded like item_info
    emb = rng.normal(size=(N_ITEMS, 128)).astype(np.float32)
    emb[0] = 0
    levels = rng.integers(0, 11, size=(2, N_ITEMS))
    levels[:, 0] = 0
    return ItemTable(tags, emb, levels[0].astype(np.int64), levels[1].astype(np.int64), source="<test>")


@pytest.fixture(scope="module")
def split() -> SplitArrays:
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, MAX_LEN + 1, size=N_ROWS)
    lengths[:4] = MAX_LEN  # some rows fill the whole window: no padding at all
    hist = np.zeros((N_ROWS, MAX_LEN), dtype=np.int32)
    for r, n in enumerate(lengths):
        hist[r, MAX_LEN - n :] = rng.integers(1, N_ITEMS, size=n)  # most recent last
    return SplitArrays(
        "train",
        user_id=rng.integers(0, 10_000, size=N_ROWS).astype(np.int64),
        item_id=rng.integers(1, N_ITEMS, size=N_ROWS).astype(np.int64),
        likes=rng.integers(0, 11, size=N_ROWS).astype(np.int64),
        views=rng.integers(0, 11, size=N_ROWS).astype(np.int64),
        label=(np.arange(N_ROWS) % 3 == 0).astype(np.float32),
        hist=hist,
    )


def make_model(
    name: str, items: ItemTable, fit: SplitArrays | None = None, **params
) -> tuple[RunConfig, nn.Module]:
    """The model as its shipped YAML defines it, with `params` overriding model_params; with `fit`,
    prepared on that split as training does (the counting baselines take their counts)."""
    torch.manual_seed(0)
    cfg = resolve_run_config(name, overrides={"model_params": params} if params else None)
    model = build_model(cfg, items)
    return cfg, prepare_model(model, fit) if fit is not None else model


def with_hist(batch: Batch, hist: torch.Tensor) -> Batch:
    return Batch(batch.user_id, hist, batch.item_id, batch.likes, batch.views, batch.label)


def predict(model: nn.Module, batch: Batch) -> torch.Tensor:
    with torch.inference_mode():
        return model(batch)


ALL = sorted(MODELS)
NEURAL = sorted(m for m in MODELS if m not in BASELINES)  # the models that read a history


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ALL)
def test_two_adam_steps(name: str, bf16: bool, items: ItemTable, split: SplitArrays) -> None:
    _, model = make_model(name, items, split)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = make_batch(split, slice(0, N_ROWS))
    model.train()
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch).float()
        assert logits.shape == (N_ROWS,)
        loss = loss_fn(model, logits, batch, TrainConfig())
        assert torch.isfinite(loss), f"{name}: loss {loss.item()}"
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2, f"{name}: only {changed} changed"


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip(name: str, items: ItemTable, split: SplitArrays, tmp_path: Path) -> None:
    cfg, model = make_model(name, items, split)
    batch = make_batch(split, slice(0, N_ROWS))
    model.train()
    with torch.no_grad():
        model(batch)  # move batch-norm running statistics off their initial values
    model.eval()
    save_run(tmp_path / "run", cfg, model, items, metrics={}, facts={})
    cfg2, loaded, _ = load_run(tmp_path / "run")
    assert cfg2 == cfg
    assert not loaded.training
    torch.testing.assert_close(predict(loaded, batch), predict(model, batch), rtol=0, atol=0)


def test_run_saved_before_row_context_still_loads(
    items: ItemTable, split: SplitArrays, tmp_path: Path
) -> None:
    """Runs written before the likes/views/user fields moved into `model.context` name them at the
    top level; load_run renames them, so those runs keep predicting the same."""
    from safetensors.torch import load_file, save_file

    cfg, model = make_model("din", items)
    model.eval()
    save_run(tmp_path / "run", cfg, model, items, metrics={}, facts={})
    weights = tmp_path / "run" / "model.safetensors"
    state = load_file(str(weights))
    save_file({k.removeprefix("context."): v for k, v in state.items()}, str(weights))
    assert "likes_emb.weight" in load_file(str(weights))
    _, loaded, _ = load_run(tmp_path / "run")
    batch = make_batch(split, slice(0, N_ROWS))
    torch.testing.assert_close(predict(loaded, batch), predict(model, batch), rtol=0, atol=0)


@pytest.mark.parametrize("name", NEURAL)
def test_history_is_read_through_the_right_mask(name: str, items: ItemTable, split: SplitArrays) -> None:
    """A mask that treats real items as padding (or the reverse) must make this test fail: rows whose
    history fills the window have no padding at all, and they must score the same alone as beside
    shorter rows, and the same again with extra padding columns in front."""
    _, model = make_model(name, items)
    model.eval()
    batch = make_batch(split, slice(0, N_ROWS))
    assert batch.hist.shape[1] == MAX_LEN and bool((batch.hist > 0).all(dim=1).any())
    out = predict(model, batch)
    assert torch.isfinite(out).all()

    # Only the amount of left padding changes: outputs must not.
    more = torch.cat([torch.zeros(N_ROWS, 5, dtype=batch.hist.dtype), batch.hist], dim=1)
    torch.testing.assert_close(predict(model, with_hist(batch, more)), out, rtol=1e-4, atol=1e-5)
    for r in range(N_ROWS):  # each row alone, trimmed to its own length: no padding at all
        one = make_batch(split, slice(r, r + 1))
        assert bool((one.hist > 0).all())
        torch.testing.assert_close(predict(model, one), out[r : r + 1], rtol=1e-4, atol=1e-5)

    # A real history item changes (the oldest one of full rows, far from the most recent): the
    # output must move, and only in the rows that changed. QIN's ReLU attention gives some items
    # exactly zero weight, so each full row tries several replacements and one of them must count.
    full = (batch.hist > 0).all(dim=1)
    most = torch.zeros(N_ROWS)
    for v in range(1, 11):
        hist = batch.hist.clone()
        hist[full, 0] = (hist[full, 0] + v - 1) % (N_ITEMS - 1) + 1
        moved = (predict(model, with_hist(batch, hist)) - out).abs()
        assert float(moved[~full].max()) == 0.0
        most = torch.maximum(most, moved)
    assert bool((most[full] > 1e-6).all()), f"{name} ignores a real history item: {most[full]}"


@pytest.mark.parametrize("name", ALL)
def test_empty_history_gives_finite_output(name: str, items: ItemTable, split: SplitArrays) -> None:
    _, model = make_model(name, items, split)
    batch = make_batch(split, slice(0, 8))
    hist = batch.hist.clone()
    hist[0] = 0  # cannot happen in MMCTR data (min length 3), but must not produce NaN
    model.train()
    logits = model(with_hist(batch, hist))
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", NEURAL)
def test_shared_feature_options(name: str, items: ItemTable, split: SplitArrays) -> None:
    batch = make_batch(split, slice(0, 8))
    _, plain = make_model(name, items, use_user_id=False, user_buckets=1000)
    _, rich = make_model(name, items, use_user_id=True, hist_levels=True, use_tags=False, user_buckets=1000)
    for model in (plain, rich):
        model.eval()
        assert predict(model, batch).shape == (8,)
        # every embedding table gets the L2 regulariser
        listed = {id(t) for t in model.embedding_tables()}
        assert listed == {id(m) for m in model.modules() if isinstance(m, nn.Embedding)}
    assert rich.items.tag_emb is None and hasattr(rich.items, "likes_emb")
    other_users = Batch(batch.user_id + 1, batch.hist, batch.item_id, batch.likes, batch.views, batch.label)
    assert not torch.equal(predict(rich, other_users), predict(rich, batch))
    assert torch.equal(predict(plain, other_users), predict(plain, batch))


@pytest.mark.parametrize("name", NEURAL)
def test_unknown_config_key_is_named(name: str, tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"model: {name}\nmodel_params:\n  embedding_dim: 8\n  hidden_unitz: [4]\n")
    with pytest.raises(ConfigError, match="hidden_unitz"):
        resolve_run_config(name, config_file=path)


def test_length_groups_lay_out_and_restore_rows(split: SplitArrays) -> None:
    from mmctr.models.layers import LengthGroups

    hist = make_batch(split, slice(0, N_ROWS)).hist
    groups = LengthGroups(hist, edges=(4, 8), min_width=5)
    assert len(groups.groups) == 3
    packed = groups.ids.float().unsqueeze(-1)  # (P, 1): each real position carries its own id
    for g in groups.groups:
        assert g.width >= 5 and bool((~g.pad).any(dim=0)[-1])
        expect = F.pad(hist[g.rows], (max(g.width - MAX_LEN, 0), 0))[:, -g.width :]
        torch.testing.assert_close(g.layout(packed).squeeze(-1), expect.float())
        torch.testing.assert_close(g.pad, expect == 0)
    rows = groups.gather([g.rows for g in groups.groups])
    torch.testing.assert_close(rows, torch.arange(N_ROWS))


@pytest.mark.parametrize("name", ALL)
def test_bf16_serving_copy_scores_a_request(name: str, items: ItemTable, split: SplitArrays) -> None:
    """`for_serving(bf16=True)` casts every weight to bf16; each model must still run a request
    end to end (no fp32 intermediate meeting a bf16 layer) and stay close to the fp32 scores."""
    from mmctr.serving import for_serving, request_batch, score_request, warm_up

    _, model = make_model(name, items, split)
    model.eval()
    served = for_serving(model, bf16=True)
    assert warm_up(served, candidates=10, max_len=MAX_LEN) >= 1
    req = request_batch(split.hist[0], split.item_id[:10], split.likes[:10], split.views[:10], user_id=3)
    p16, p32 = score_request(served, req), score_request(model, req)
    assert p16.shape == (10,) and np.isfinite(p16).all()
    assert np.abs(p16 - p32).max() < 0.05
    assert next(model.parameters()).dtype == torch.float32  # the trained model is left as it was
    # the fp32 serving copy (batch norm folded, linears packed for oneDNN where it exists) answers
    # as the model does, on the request path and on the batch path
    from mmctr.serving import PackedLinear, _can_pack

    served32 = for_serving(model)
    if _can_pack() and any(isinstance(m, nn.Linear) for m in model.modules()):
        assert any(isinstance(m, PackedLinear) for m in served32.modules())
    assert np.allclose(score_request(served32, req), p32, atol=1e-5)
    assert np.abs(score_request(served32, req, bf16=True) - p32).max() < 0.05  # under autocast too
    batch = make_batch(split, slice(0, 8))
    assert torch.allclose(predict(served32, batch), predict(model, batch), atol=1e-4)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_svdpp_logit_is_the_svdpp_formula(alpha: float, items: ItemTable, split: SplitArrays) -> None:
    """svdpp's logit, recomputed row by row from its weights: biases + mean history bias + the
    target factor · (user factor + |H|^-alpha * sum of the history factors)."""
    _, model = make_model("svdpp", items, history_alpha=alpha, user_buckets=1000)
    with torch.no_grad():  # biases start at zero: give every table values
        for t in (model.item_bias, model.hist_bias, model.len_bias, model.likes_bias, model.views_bias):
            t.weight.normal_()
        model.hist_bias.weight[0] = 0
        model.bias.fill_(0.3)
    model.eval()
    batch = make_batch(split, slice(0, 12))
    out = predict(model, batch)
    with torch.no_grad():
        for r in range(12):
            h = batch.hist[r][batch.hist[r] > 0]
            i, u = batch.item_id[r], int(batch.user_id[r]) % 1000
            pu = model.user.emb.weight[u]
            user = pu[:-1] + model.hist_items(h).sum(0) / len(h) ** alpha
            want = (
                0.3
                + model.item_bias.weight[i, 0]
                + model.likes_bias.weight[batch.likes[r], 0]
                + model.views_bias.weight[batch.views[r], 0]
                + model.len_bias.weight[len(h), 0]
                + model.hist_bias.weight[h, 0].mean()
                + pu[-1]
                + model.items(i.view(1))[0] @ user
            )
            torch.testing.assert_close(out[r], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["din", "sasrec_dcn", "lr"])
def test_warm_up_scores_every_history_shape_the_request_path_can_meet(
    name: str, items: ItemTable, split: SplitArrays
) -> None:
    """The DIN pads histories to a multiple of REQUEST_BUCKET; a model whose packed linears see the
    raw length meets every length from 1 to max_len; one without packed linears has no per-shape
    kernels to build."""
    from mmctr.models.layers import REQUEST_BUCKET
    from mmctr.serving import PackedLinear, for_serving, warm_up

    _, model = make_model(name, items, split)
    served = for_serving(model)
    packed = any(isinstance(m, PackedLinear) for m in served.modules())
    want = {"din": MAX_LEN // REQUEST_BUCKET, "sasrec_dcn": MAX_LEN if packed else 1, "lr": 1}[name]
    assert warm_up(served, candidates=10, max_len=MAX_LEN) == want


@pytest.mark.parametrize("name", ALL)
def test_every_model_answers_a_request_with_an_empty_history(
    name: str, items: ItemTable, split: SplitArrays
) -> None:
    """`/v1/rank` accepts `"history": []` (a new user). din_mhta and qin once failed on it: their
    multi-head attention reshaped zero history positions with an ambiguous -1."""
    from mmctr.serving import for_serving, request_batch, score_request

    _, model = make_model(name, items, split)
    model.eval()
    req = request_batch(np.array([], np.int64), split.item_id[:10], split.likes[:10], split.views[:10])
    for scorer in (model, for_serving(model)):
        p = score_request(scorer, req)
        assert p.shape == (10,) and np.isfinite(p).all()
