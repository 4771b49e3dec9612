"""The reader: loads the real layout into arrays, and every bad input gets an error that names the
file and the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmctr.data.batches import iter_batches
from mmctr.data.reader import load_dataset, read_item_info, read_split
from mmctr.data.schema import Layout
from mmctr.errors import DataError


def _rewrite(path: Path, fn) -> None:
    table = pq.read_table(path)
    pq.write_table(fn(table), path)


def _set_column(table: pa.Table, name: str, values) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(name), pa.array(values, type=table.schema.field(name).type))


def test_loads_arrays(tiny_data: Path):
    data = load_dataset(tiny_data, max_len=20)
    train = data["train"]
    raw = pq.read_table(Layout(tiny_data).split("train"))
    assert len(train) == raw.num_rows
    assert train.hist.shape == (raw.num_rows, 20) and train.hist.dtype == np.int32
    # the kept columns are the most recent 20 of the 100 (left padding, most recent last)
    seq = np.stack(raw.column("item_seq").to_numpy(zero_copy_only=False))
    assert np.array_equal(train.hist, seq[:, -20:])
    assert np.array_equal(train.item_id, raw.column("item_id").to_numpy())
    assert data.items.n_items == pq.read_metadata(Layout(tiny_data).item_info).num_rows
    assert (train.hist_len >= 1).all()
    # item features are looked up by item_id as a row index
    info = pq.read_table(Layout(tiny_data).item_info)
    k = int(train.item_id[0])
    assert np.allclose(data.items.emb[k], info.column("item_emb_d128")[k].as_py())


def test_batches_cover_every_row_once(tiny_data: Path):
    split = load_dataset(tiny_data, splits=("valid",))["valid"]
    seen = np.concatenate(
        [b.item_id.numpy() for b in iter_batches(split, 97, shuffle=True, rng=np.random.default_rng(0))]
    )
    assert np.array_equal(np.sort(seen), np.sort(split.item_id))
    b = next(iter_batches(split, 64))
    assert b.hist.shape[1] == int(split.hist_len[:64].max())  # trimmed to the longest real history
    assert b.mask.any(dim=0).all()


def test_missing_column(tiny_copy: Path):
    path = Layout(tiny_copy).split("train")
    _rewrite(path, lambda t: t.drop_columns(["likes_level"]))
    with pytest.raises(DataError, match=r"train\.parquet.*'likes_level'.*missing"):
        load_dataset(tiny_copy)


def test_wrong_list_length(tiny_copy: Path):
    path = Layout(tiny_copy).split("valid")

    def shorten(t: pa.Table) -> pa.Table:
        seqs = t.column("item_seq").to_pylist()
        seqs[3] = seqs[3][1:]  # 99 long
        return _set_column(t, "item_seq", seqs)

    _rewrite(path, shorten)
    with pytest.raises(
        DataError, match=r"valid\.parquet.*'item_seq'.*row 3 has a list of length 99.*exactly 100"
    ):
        load_dataset(tiny_copy)


def test_target_item_id_out_of_range(tiny_copy: Path):
    n_items = pq.read_metadata(Layout(tiny_copy).item_info).num_rows
    path = Layout(tiny_copy).split("train")

    def bad(t: pa.Table) -> pa.Table:
        ids = t.column("item_id").to_numpy().copy()
        ids[5] = n_items  # one past the last row of item_info
        return _set_column(t, "item_id", ids)

    _rewrite(path, bad)
    with pytest.raises(DataError, match=rf"train\.parquet.*'item_id'.*row 5 holds {n_items}"):
        load_dataset(tiny_copy)


def test_history_item_id_out_of_range(tiny_copy: Path):
    n_items = pq.read_metadata(Layout(tiny_copy).item_info).num_rows
    path = Layout(tiny_copy).split("test")

    def bad(t: pa.Table) -> pa.Table:
        seqs = t.column("item_seq").to_pylist()
        seqs[0][-1] = n_items + 7
        return _set_column(t, "item_seq", seqs)

    _rewrite(path, bad)
    with pytest.raises(DataError, match=rf"test\.parquet.*'item_seq'.*row 0.*{n_items + 7}"):
        read_split(path, n_items)


def test_right_padded_history(tiny_copy: Path):
    path = Layout(tiny_copy).split("valid")

    def bad(t: pa.Table) -> pa.Table:
        seqs = t.column("item_seq").to_pylist()
        real = [x for x in seqs[2] if x]
        seqs[2] = real + [0] * (100 - len(real))
        return _set_column(t, "item_seq", seqs)

    _rewrite(path, bad)
    with pytest.raises(DataError, match=r"valid\.parquet.*'item_seq'.*row 2.*LEFT zero-padded"):
        load_dataset(tiny_copy)


def test_nan_in_embedding(tiny_copy: Path):
    path = Layout(tiny_copy).item_info

    def bad(t: pa.Table) -> pa.Table:
        emb = np.stack(t.column("item_emb_d128").to_numpy(zero_copy_only=False)).astype(np.float32)
        emb[4, 10] = np.nan
        return _set_column(t, "item_emb_d128", list(emb))

    _rewrite(path, bad)
    with pytest.raises(DataError, match=r"item_info\.parquet.*'item_emb_d128'.*row 4.*NaN"):
        read_item_info(path)


def test_padding_row_must_be_zero(tiny_copy: Path):
    path = Layout(tiny_copy).item_info

    def bad(t: pa.Table) -> pa.Table:
        emb = np.stack(t.column("item_emb_d128").to_numpy(zero_copy_only=False)).astype(np.float32)
        emb[0, 0] = 1.0
        return _set_column(t, "item_emb_d128", list(emb))

    _rewrite(path, bad)
    with pytest.raises(DataError, match=r"item_info\.parquet.*'item_emb_d128'.*row 0"):
        read_item_info(path)


def test_item_info_rows_out_of_order(tiny_copy: Path):
    path = Layout(tiny_copy).item_info
    _rewrite(path, lambda t: t.take(np.r_[0, 2, 1, np.arange(3, t.num_rows)]))
    with pytest.raises(DataError, match=r"item_info\.parquet.*'item_id'.*row 1 holds item_id 2"):
        read_item_info(path)


def test_truncated_parquet(tiny_copy: Path):
    path = Layout(tiny_copy).split("train")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"train\.parquet.*truncated or corrupt"):
        load_dataset(tiny_copy)


def test_missing_file(tiny_copy: Path):
    Layout(tiny_copy).split("valid").unlink()
    with pytest.raises(DataError, match=r"valid\.parquet.*file not found"):
        load_dataset(tiny_copy)


def test_wrong_dtype(tiny_copy: Path):
    path = Layout(tiny_copy).split("train")
    _rewrite(
        path,
        lambda t: t.set_column(
            t.schema.get_field_index("item_id"),
            "item_id",
            pa.array([str(x) for x in t.column("item_id").to_pylist()]),
        ),
    )
    with pytest.raises(DataError, match=r"train\.parquet.*'item_id'.*expected int"):
        load_dataset(tiny_copy)
