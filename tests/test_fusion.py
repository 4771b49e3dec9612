"""Fusions on small synthetic feature matrices: PCA, each registered fusion's contract (shape, row
0 zero, unit rows, seeded), and that coclick learns the co-click structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmctr.data.schema import Layout
from mmctr.errors import ConfigError
from mmctr.fusion import FUSIONS, FusionInput, FusionOptions, get_fusion
from mmctr.fusion.base import fit_pca, l2n
from mmctr.fusion.coclick import cooccurrence_pairs

N, CLUSTERS = 300, 6


def _world(root: Path, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Items in hidden clusters: content shows the cluster weakly, users click within a cluster.
    Writes item_seq.parquet and an item_info.parquet with a provided embedding under `root`."""
    rng = np.random.default_rng(seed)
    cluster = np.r_[0, rng.integers(0, CLUSTERS, N)]  # row 0 padding
    centers_t, centers_i = rng.normal(size=(CLUSTERS, 24)), rng.normal(size=(CLUSTERS, 40))
    text = 0.4 * centers_t[cluster] + rng.normal(size=(N + 1, 24))
    image = 0.4 * centers_i[cluster] + rng.normal(size=(N + 1, 40))
    text[0] = image[0] = 0
    seqs = []
    for _ in range(1500):
        c = rng.integers(CLUSTERS)
        members = np.flatnonzero(cluster == c)
        seqs.append(rng.choice(members, size=rng.integers(4, 10)).tolist())
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"user_id": np.arange(len(seqs)), "item_seq": seqs}), root / "item_seq.parquet")
    emb = rng.normal(size=(N + 1, 16)).astype(np.float32)
    emb[0] = 0
    (root / "MicroLens_1M_x1").mkdir(exist_ok=True)
    offsets = pa.array(np.arange(0, (N + 2) * 16, 16, dtype=np.int32))
    pq.write_table(
        pa.table(
            {
                "item_id": np.arange(N + 1),
                "item_emb_d128": pa.ListArray.from_arrays(offsets, pa.array(emb.reshape(-1))),
            }
        ),
        root / "MicroLens_1M_x1" / "item_info.parquet",
    )
    return {"text": text.astype(np.float32), "image": image.astype(np.float32)}, cluster


def _input(root: Path, feats: dict[str, np.ndarray], dim: int = 16, **kw) -> FusionInput:
    return FusionInput(
        features=feats,
        item_ids=np.arange(1, N + 1),
        n_rows=N + 1,
        dim=dim,
        seed=0,
        layout=Layout(root),
        options=FusionOptions(
            coclick_epochs=4, coclick_batch_size=256, coclick_input_dim=32, coclick_max_pairs=8000
        ),
        **kw,
    )


def _cluster_margin(emb: np.ndarray, cluster: np.ndarray) -> float:
    """Mean cosine within clusters minus mean cosine across clusters."""
    z = l2n(emb[1:])
    sim = z @ z.T
    same = cluster[1:, None] == cluster[None, 1:]
    np.fill_diagonal(same, False)
    other = cluster[1:, None] != cluster[None, 1:]
    return float(sim[same].mean() - sim[other].mean())


def test_pca_keeps_variance_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 10)) * np.arange(10, 0, -1)  # decreasing variance per axis
    p = fit_pca(x.astype(np.float32), 3)
    assert np.allclose(p.components @ p.components.T, np.eye(3), atol=1e-5)
    expected = (np.arange(10, 0, -1) ** 2)[:3].sum() / (np.arange(10, 0, -1) ** 2).sum()
    assert p.variance_kept == pytest.approx(expected, abs=0.05)
    again = fit_pca(x.astype(np.float32), 3)
    np.testing.assert_array_equal(p.components, again.components)  # signs fixed
    with pytest.raises(ConfigError, match="cannot reduce 10-d"):
        fit_pca(x, 11)
    # fewer items than dimensions (the Gram-matrix path) agrees with an SVD
    wide = (rng.normal(size=(40, 100)) * np.linspace(3, 0.1, 100)).astype(np.float32)
    p = fit_pca(wide, 5)
    _, sv, vt = np.linalg.svd(wide - wide.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(p.components @ vt[:5].T), np.eye(5), atol=1e-4)
    assert p.variance_kept == pytest.approx((sv[:5] ** 2).sum() / (sv**2).sum(), rel=1e-4)


@pytest.mark.parametrize("name", ["concat_pca", "pca_concat", "text", "image", "random", "provided"])
def test_fusion_contract(name: str, tmp_path: Path):
    feats, _ = _world(tmp_path)
    res = get_fusion(name).fuse(_input(tmp_path, feats))
    emb = res.emb
    assert emb.shape == (N + 1, 16) and emb.dtype == np.float32
    assert np.all(emb[0] == 0)
    if name != "provided":
        assert np.allclose(np.linalg.norm(emb[1:], axis=1), 1.0, atol=1e-5)
    if name in ("concat_pca", "text", "image", "pca_concat"):
        assert 0 < res.variance_kept <= 1
    again = get_fusion(name).fuse(_input(tmp_path, feats)).emb
    np.testing.assert_array_equal(emb, again)


def test_provided_copies_by_id(tmp_path: Path):
    feats, _ = _world(tmp_path)
    emb = get_fusion("provided").fuse(_input(tmp_path, feats)).emb
    t = pq.read_table(tmp_path / "MicroLens_1M_x1" / "item_info.parquet")
    data = np.asarray(t.column("item_emb_d128").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(emb, data)
    with pytest.raises(ConfigError, match="use --dim 16"):
        get_fusion("provided").fuse(_input(tmp_path, feats, dim=8))


def test_pca_concat_gives_each_modality_half(tmp_path: Path):
    feats, _ = _world(tmp_path)
    res = get_fusion("pca_concat").fuse(_input(tmp_path, feats))
    halves = res.emb[1:, :8], res.emb[1:, 8:]
    for h in halves:  # each modality contributes exactly half of the (unit) norm
        assert np.allclose(np.linalg.norm(h, axis=1), np.sqrt(0.5), atol=1e-5)
    assert set(res.info["variance_kept_by_modality"]) == {"text", "image"}


def test_clip_sum_needs_one_clip_checkpoint(tmp_path: Path):
    feats, _ = _world(tmp_path)
    feats = {"text": feats["text"][:, :24], "image": feats["image"][:, :24]}  # a shared 24-d space
    clip = {"family": "clip", "model": "ckpt"}
    with pytest.raises(ConfigError, match="same CLIP checkpoint"):
        get_fusion("clip_sum").fuse(
            _input(tmp_path, feats, encoders={"text": {"family": "st"}, "image": clip})
        )
    res = get_fusion("clip_sum").fuse(_input(tmp_path, feats, encoders={"text": clip, "image": clip}))
    assert res.emb.shape == (N + 1, 16) and np.allclose(np.linalg.norm(res.emb[1:], axis=1), 1, atol=1e-5)


def test_cooccurrence_pairs_stay_within_users():
    values = np.array([0, 0, 1, 2, 3, 0, 4, 5], dtype=np.int64)
    offsets = np.array([0, 5, 8])  # user A: 0 0 1 2 3 ; user B: 0 4 5
    a, b = cooccurrence_pairs(values, offsets, 6, window=2, max_pairs=100, rng=np.random.default_rng(0))
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    assert pairs == {(1, 2), (2, 3), (1, 3), (4, 5)}  # no padding, nothing across users


def test_coclick_learns_co_click_structure(tmp_path: Path):
    import torch

    # tiny matrices: one thread avoids thread spin-waits on a shared 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_coclick(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_coclick(tmp_path: Path) -> None:
    feats, cluster = _world(tmp_path)
    base = get_fusion("concat_pca").fuse(_input(tmp_path, feats)).emb
    res = get_fusion("coclick").fuse(_input(tmp_path, feats))
    assert res.emb.shape == (N + 1, 16) and np.all(res.emb[0] == 0)
    assert res.info["loss_by_epoch"][-1] < res.info["loss_by_epoch"][0]
    # items clicked together end up closer than content alone puts them
    assert _cluster_margin(res.emb, cluster) > _cluster_margin(base, cluster) + 0.1
    again = get_fusion("coclick").fuse(_input(tmp_path, feats)).emb
    np.testing.assert_allclose(res.emb, again, atol=1e-6)  # seeded


def test_registry_lists_every_fusion():
    assert set(FUSIONS) >= {
        "concat_pca",
        "pca_concat",
        "clip_sum",
        "coclick",
        "text",
        "image",
        "random",
        "provided",
    }
    with pytest.raises(ConfigError, match="unknown; available"):
        get_fusion("sum")
