"""The counting baselines (pop, pop_user) and the logistic regression: what they count, that a train
row never sees its own label, and that they rank valid rows as their counts say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmctr.config import resolve_run_config
from mmctr.data.batches import make_batch
from mmctr.data.reader import ItemTable, SplitArrays
from mmctr.errors import ConfigError
from mmctr.models.layers import RateTable
from mmctr.training.loop import prepare_model
from mmctr.training.metrics import auc
from mmctr.training.run_dir import build_model

N_ITEMS = 8


def items() -> ItemTable:
    tags = np.zeros((N_ITEMS, 5), dtype=np.int32)
    tags[1:, -1] = np.arange(1, N_ITEMS) % 3 + 1
    emb = np.zeros((N_ITEMS, 128), dtype=np.float32)
    zeros = np.zeros(N_ITEMS, dtype=np.int64)
    return ItemTable(tags, emb, zeros, zeros, source="<test>")


def split(item_id, user_id, label) -> SplitArrays:
    n = len(item_id)
    hist = np.zeros((n, 4), dtype=np.int32)
    hist[:, -1] = 1
    z = np.zeros(n, dtype=np.int64)
    return SplitArrays(
        "train",
        user_id=np.asarray(user_id, np.int64),
        item_id=np.asarray(item_id, np.int64),
        likes=z,
        views=z,
        label=np.asarray(label, np.float32),
        hist=hist,
    )


def model(name: str, train: SplitArrays, **params):
    cfg = resolve_run_config(name, overrides={"model_params": params} if params else None)
    return prepare_model(build_model(cfg, items()), train)


def test_rate_table_smooths_toward_the_prior_and_leaves_one_out() -> None:
    t = RateTable(4, smoothing=2.0)
    t.fit(torch.tensor([1, 1, 1, 2]), torch.tensor([1.0, 1.0, 0.0, 1.0]))
    assert float(t.prior) == pytest.approx(0.75)
    rate = torch.sigmoid(t(torch.tensor([1, 2, 3])))
    # (pos + m * prior) / (count + m): item 1 (2 + 1.5) / 5, item 2 (1 + 1.5) / 3, unseen item 3: prior
    torch.testing.assert_close(rate, torch.tensor([0.7, 2.5 / 3, 0.75]), rtol=1e-5, atol=1e-5)
    # leave-one-out: item 2's only row, labelled 1, sees no row of its item: the prior
    loo = torch.sigmoid(t(torch.tensor([2, 1]), own_label=torch.tensor([1.0, 0.0])))
    torch.testing.assert_close(loo, torch.tensor([0.75, (2 + 1.5) / 4]), rtol=1e-5, atol=1e-5)


def test_pop_ranks_items_by_their_train_rate_and_ignores_users() -> None:
    # item 1: 3 of 4 positive, item 2: 1 of 4, item 3: 2 of 4
    train = split([1] * 4 + [2] * 4 + [3] * 4, range(12), [1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0])
    m = model("pop", train, smoothing=1.0).eval()
    valid = split([2, 3, 1, 4], [0, 0, 0, 0], [0, 0, 1, 1])
    p = m(make_batch(valid, slice(None)))
    assert p[2] > p[1] > p[0]  # item 1 > item 3 > item 2
    other_users = split([2, 3, 1, 4], [5, 6, 7, 8], [0, 0, 1, 1])
    torch.testing.assert_close(m(make_batch(other_users, slice(None))), p)


def test_pop_user_counts_users_too() -> None:
    # same items for both users; user 1 likes everything, user 2 nothing
    train = split([1, 2, 3, 1, 2, 3], [1, 1, 1, 2, 2, 2], [1, 1, 1, 0, 0, 0])
    m = model("pop_user", train, smoothing=1.0).eval()
    valid = split([1, 1], [1, 2], [1, 0])
    p = m(make_batch(valid, slice(None)))
    assert p[0] > p[1]
    assert auc(np.array([1.0, 0.0]), p.detach().numpy()) == 1.0


def test_train_rows_do_not_see_their_own_label() -> None:
    """Item 1 appears once (positive) and item 2 once (negative): leave-one-out gives both the same
    train-mode score, so fitting the weights cannot learn from a row's own answer."""
    train = split([1, 2], [1, 2], [1, 0])
    m = model("pop", train).train()
    with torch.no_grad():
        logits = m(make_batch(train, slice(None)))
    assert float(logits[0]) == pytest.approx(float(logits[1]))
    m.eval()
    with torch.no_grad():
        logits = m(make_batch(train, slice(None)))
    assert float(logits[0]) > float(logits[1])  # at serving time the counts are used in full


def test_lr_learns_item_and_user_weights() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    item = rng.integers(1, N_ITEMS, n)
    user = rng.integers(1, 50, n)
    p = 1 / (1 + np.exp(-(item - 4) * 0.8 - (user % 2) * 1.5 + 0.7))
    train = split(item, user, (rng.random(n) < p).astype(np.float32))
    m = model("lr", train, user_buckets=64)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    batch = make_batch(train, slice(None))
    for _ in range(200):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m(batch), batch.label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    assert auc(train.label, torch.sigmoid(m(batch)).detach().numpy()) > auc(train.label, p) - 0.02
    w = m.item_w.weight.detach().squeeze(-1)
    assert float(w[7]) > float(w[1])


@pytest.mark.parametrize("name", ["pop", "pop_user", "lr"])
def test_unknown_config_key_is_named(name: str) -> None:
    with pytest.raises(ConfigError, match="embedding_dim"):
        resolve_run_config(name, overrides={"model_params": {"embedding_dim": 8}})
