"""The synthetic generator on the tiny scale: exact layout and dtypes, reproducibility, the
agreement of item_seq.parquet with the split rows, cold items, label rate and atomic writing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmctr.data.schema import (
    EMB_DIM,
    ITEM_FEATURE_COLUMNS,
    ITEM_INFO_COLUMNS,
    ITEM_SEQ_COLUMNS,
    SEQ_LEN,
    SPLIT_COLUMNS,
    SPLITS,
    TAGS_LEN,
    Layout,
)
from mmctr.data.synth import SCALES, generate
from mmctr.errors import MMCTRError

TINY = SCALES["tiny"]
I64, F64 = pa.int64(), pa.float64()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "data"
    summary = generate(root, scale="tiny", seed=0, progress=False)
    return root, summary


def _matrix(column: pa.ChunkedArray, width: int) -> np.ndarray:
    lists = column.combine_chunks()
    lengths = np.diff(lists.offsets.to_numpy())
    assert (lengths == width).all(), f"every list must have {width} elements"
    return lists.values.to_numpy().reshape(-1, width)


def _types(path: Path) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in pq.read_schema(path)}


def test_split_files_layout(tiny: tuple[Path, dict]) -> None:
    root, _ = tiny
    lay = Layout(root)
    n_rows = {"train": TINY.n_train, "valid": TINY.n_valid, "test": TINY.n_test}
    for name in SPLITS:
        table = pq.read_table(lay.split(name))
        assert tuple(table.column_names) == SPLIT_COLUMNS
        assert _types(lay.split(name)) == {
            "user_id": I64,
            "item_seq": pa.list_(I64),
            "item_id": I64,
            "likes_level": I64,
            "views_level": I64,
            "label": F64,
        }
        assert table.num_rows == n_rows[name]
        seq = _matrix(table["item_seq"], SEQ_LEN)
        real = seq > 0
        # Left padding: once a real item starts, no zero follows; at least 3 real items per row.
        assert (np.diff(real.astype(np.int8), axis=1) >= 0).all()
        assert (real.sum(axis=1) >= 3).all()
        assert seq.max() <= TINY.n_items and seq.min() >= 0
        item = table["item_id"].to_numpy()
        assert item.min() >= 1 and item.max() <= TINY.n_items
        for level in ("likes_level", "views_level"):
            lv = table[level].to_numpy()
            assert lv.min() >= 0 and lv.max() <= 10
        label = table["label"].to_numpy()
        assert set(np.unique(label)) <= {0.0, 1.0}
        if name == "test":
            assert (label == 0.0).all()


def test_item_files_layout(tiny: tuple[Path, dict]) -> None:
    root, _ = tiny
    lay = Layout(root)
    info = pq.read_table(lay.item_info)
    assert tuple(info.column_names) == ITEM_INFO_COLUMNS
    assert _types(lay.item_info) == {
        "item_id": I64,
        "item_tags": pa.list_(I64),
        "item_emb_d128": pa.list_(pa.float32()),
    }
    assert info.num_rows == TINY.n_items + 1
    assert (info["item_id"].to_numpy() == np.arange(TINY.n_items + 1)).all()
    tags, emb = _matrix(info["item_tags"], TAGS_LEN), _matrix(info["item_emb_d128"], EMB_DIM)
    assert (tags[0] == 0).all() and (emb[0] == 0).all()
    assert (tags[1:] > 0).any(axis=1).all(), "every item has at least one tag"
    assert (np.diff((tags > 0).astype(np.int8), axis=1) >= 0).all(), "tags are left zero-padded"
    assert tags.max() < TINY.n_tags
    assert np.abs(emb[1:]).sum(axis=1).min() > 0

    feat = pq.read_table(lay.item_feature)
    assert tuple(feat.column_names) == ITEM_FEATURE_COLUMNS
    assert _types(lay.item_feature) == {
        "item_id": I64,
        "item_title": pa.string(),
        "item_tags": pa.list_(I64),
        "likes_level": I64,
        "views_level": I64,
    }
    assert (feat["item_id"].to_numpy() == np.arange(1, TINY.n_items + 1)).all()
    assert (_matrix(feat["item_tags"], TAGS_LEN) == tags[1:]).all()
    titles = feat["item_title"].to_pylist()
    assert all(3 <= len(t.split()) <= 8 for t in titles)

    seq = pq.read_table(lay.item_seq)
    assert tuple(seq.column_names) == ITEM_SEQ_COLUMNS
    assert _types(lay.item_seq) == {"user_id": I64, "item_seq": pa.list_(I64)}

    images = sorted(lay.images_dir.iterdir())
    assert len(images) == TINY.n_items
    assert {p.name for p in images} == {f"{i}.jpg" for i in range(1, TINY.n_items + 1)}


def test_item_seq_agrees_with_split_rows(tiny: tuple[Path, dict]) -> None:
    root, _ = tiny
    lay = Layout(root)
    hist = pq.read_table(lay.item_seq)
    by_user = dict(zip(hist["user_id"].to_pylist(), hist["item_seq"].to_pylist(), strict=True))
    lengths = np.array([len(h) for h in by_user.values()])
    assert lengths.min() == 3 and lengths.max() <= SEQ_LEN
    assert 5 <= np.median(lengths) <= 7 and 6 <= lengths.mean() <= 10
    seen = set()
    for name in SPLITS:
        table = pq.read_table(lay.split(name))
        seq = _matrix(table["item_seq"], SEQ_LEN)
        for user, row in zip(table["user_id"].to_pylist(), seq, strict=True):
            assert row[row > 0].tolist() == by_user[user][-SEQ_LEN:]
            seen.add(user)
    assert seen == set(by_user), "item_seq.parquet has one row per user appearing in any split"


def test_cold_items_absent_from_train_and_histories(tiny: tuple[Path, dict]) -> None:
    root, summary = tiny
    lay = Layout(root)
    world = json.loads((lay.truth_dir / "world.json").read_text())
    cold = np.array(world["cold_item_ids"])
    assert 0.05 * TINY.n_items <= len(cold) <= 0.11 * TINY.n_items
    train = pq.read_table(lay.split("train"))
    assert not np.isin(train["item_id"].to_numpy(), cold).any()
    hist = pq.read_table(lay.item_seq)["item_seq"].combine_chunks().values.to_numpy()
    assert not np.isin(hist, cold).any()
    for name in ("valid", "test"):
        share = np.isin(pq.read_table(lay.split(name))["item_id"].to_numpy(), cold).mean()
        assert 0.05 <= share <= 0.15
    assert summary["cold_target_share"]["train"] == 0.0


def test_truth_files(tiny: tuple[Path, dict]) -> None:
    root, summary = tiny
    lay = Layout(root)
    with lay.test_labels.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ID", "label"]
    assert [int(r[0]) for r in rows[1:]] == list(range(TINY.n_test))
    assert {r[1] for r in rows[1:]} <= {"0", "1"}
    prob = pq.read_table(lay.click_probability)
    assert _types(lay.click_probability) == {"split": pa.string(), "row": I64, "p": F64}
    split, row = np.array(prob["split"].to_pylist()), prob["row"].to_numpy()
    assert sorted(row[split == "valid"]) == list(range(TINY.n_valid))
    assert sorted(row[split == "test"]) == list(range(TINY.n_test))
    p = prob["p"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    world = json.loads((lay.truth_dir / "world.json").read_text())
    for key in ("scale", "seed", "counts", "positive_rate", "oracle_valid_auc", "history_length"):
        assert key in world
    for name in ("train", "valid"):
        assert 0.18 <= summary["positive_rate"][name] <= 0.32
    test_rate = np.mean([int(r[1]) for r in rows[1:]])
    assert 0.18 <= test_rate <= 0.32
    # The oracle knows the truth, and the history terms carry much of it.
    assert summary["oracle_valid_auc"] > 0.75
    assert summary["oracle_valid_auc"] - summary["history_free_oracle_valid_auc"] > 0.08
    stats = summary["history_length"]
    assert stats["min"] == 3 and stats["max"] <= SEQ_LEN


def _parquet_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_same_seed_same_bytes_other_seed_differs(tiny: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = tiny
    again = tmp_path / "again"
    generate(again, scale="tiny", seed=0, progress=False)
    first, second = _parquet_bytes(root), _parquet_bytes(again)
    assert len(first) == 7 and first == second  # 6 data files + truth/click_probability
    for name in ("1.jpg", f"{TINY.n_items}.jpg"):
        assert (root / "item_images" / name).read_bytes() == (again / "item_images" / name).read_bytes()
    assert (root / "truth" / "test_labels.csv").read_bytes() == (
        again / "truth" / "test_labels.csv"
    ).read_bytes()
    other = tmp_path / "other"
    generate(other, scale="tiny", seed=1, images=False, progress=False)
    third = _parquet_bytes(other)
    assert all(third[name] != first[name] for name in first)
    assert not (other / "item_images").exists()


def test_refuses_non_empty_out_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MMCTRError, match="not empty"):
        generate(out, scale="tiny", images=False, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces only an earlier data root of `mmctr synth`, never a user's folder
    with pytest.raises(MMCTRError, match="will not replace it"):
        generate(out, scale="tiny", images=False, overwrite=True, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    other = tmp_path / "synth"
    generate(other, scale="tiny", images=False, progress=False)
    generate(other, scale="tiny", seed=1, images=False, overwrite=True, progress=False)
    assert (
        Layout(other).split("train").exists() and '"seed": 1' in (other / "truth" / "world.json").read_text()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "synth"], "no temporary directory is left"


def test_cli_synth(tmp_path: Path) -> None:
    from mmctr.cli import main

    out = tmp_path / "cli"
    assert main(["synth", "--scale", "tiny", "--seed", "3", "--out", str(out), "--no-images"]) == 0
    assert Layout(out).item_info.exists()
    assert main(["synth", "--scale", "tiny", "--out", str(out), "--no-images"]) == 2  # refuses: not empty


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmctr.data.synth.generator as gen

    def broken(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen, "write_item_seq", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(tmp_path / "data", scale="tiny", images=False, progress=False)
    assert list(tmp_path.iterdir()) == []
