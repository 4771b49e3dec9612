"""Parquet, CSV and JSON writers for the generated world, in exactly the challenge's layout.

Files are byte-reproducible: fixed schemas built from arrays (no pandas metadata), one
compression codec and fixed row-group sizes, and nothing time-dependent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmctr.data.schema import (
    EMB_DIM,
    ITEM_FEATURE_COLUMNS,
    ITEM_INFO_COLUMNS,
    ITEM_SEQ_COLUMNS,
    SEQ_LEN,
    SPLIT_COLUMNS,
    TAGS_LEN,
)
from mmctr.data.synth.world import Items, Users

ROW_GROUP = 1 << 17
COMPRESSION = "zstd"

SPLIT_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("item_seq", pa.list_(pa.int64())),
        ("item_id", pa.int64()),
        ("likes_level", pa.int64()),
        ("views_level", pa.int64()),
        ("label", pa.float64()),
    ]
)
assert tuple(SPLIT_SCHEMA.names) == SPLIT_COLUMNS


def _fixed_lists(values: np.ndarray, width: int) -> pa.ListArray:
    """(n, width) array -> list<...> column whose every list has `width` elements."""
    offsets = np.arange(0, values.shape[0] * width + 1, width, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1)))


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression=COMPRESSION, row_group_size=ROW_GROUP)


def left_padded(flat: np.ndarray, end: np.ndarray, length: np.ndarray, width: int = SEQ_LEN) -> np.ndarray:
    """(len(end), width) int64: row r holds flat[end[r] - length[r] : end[r]] (most recent last), cut
    to its last `width` items and left zero-padded."""
    take = np.minimum(length, width)
    out = np.zeros((len(end), width), dtype=np.int64)
    r = np.repeat(np.arange(len(end)), take)
    within = np.arange(len(r)) - np.repeat(np.cumsum(take) - take, take)
    src = np.repeat(end - take, take) + within
    out[r, width - np.repeat(take, take) + within] = flat[src]
    return out


def padded_histories(users: Users, rows: np.ndarray) -> np.ndarray:
    """(len(rows), SEQ_LEN) int64: each row's user history, last SEQ_LEN clicks, left zero-padded."""
    full = users.hist_len[rows]
    return left_padded(users.hist_items, users.hist_offsets[rows] + full, full)


def write_split(
    path: Path, items: Items, users: Users, rows: np.ndarray, target: np.ndarray, label: np.ndarray
) -> None:
    """One split file, built one row group at a time so the padded (n, 100) history matrix of a
    3.6M-row split never exists in memory at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, SPLIT_SCHEMA, compression=COMPRESSION) as writer:
        for lo in range(0, max(len(rows), 1), ROW_GROUP):
            u, t = rows[lo : lo + ROW_GROUP], target[lo : lo + ROW_GROUP]
            table = pa.Table.from_arrays(
                [
                    pa.array(u + 1, pa.int64()),  # user_id = user index + 1
                    _fixed_lists(padded_histories(users, u), SEQ_LEN),
                    pa.array(t, pa.int64()),
                    pa.array(items.likes_level[t], pa.int64()),
                    pa.array(items.views_level[t], pa.int64()),
                    pa.array(label[lo : lo + ROW_GROUP], pa.float64()),
                ],
                schema=SPLIT_SCHEMA,
            )
            writer.write_table(table, row_group_size=ROW_GROUP)


def write_item_info(path: Path, items: Items) -> None:
    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(items.n + 1), pa.int64()),
            _fixed_lists(items.tags, TAGS_LEN),
            _fixed_lists(items.emb.astype(np.float32), EMB_DIM),
        ],
        names=list(ITEM_INFO_COLUMNS),
    )
    _write(table, path)


def write_item_feature(path: Path, items: Items) -> None:
    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(1, items.n + 1), pa.int64()),
            pa.array(items.titles, pa.string()),
            _fixed_lists(items.tags[1:], TAGS_LEN),
            pa.array(items.likes_level[1:], pa.int64()),
            pa.array(items.views_level[1:], pa.int64()),
        ],
        names=list(ITEM_FEATURE_COLUMNS),
    )
    _write(table, path)


def write_item_seq(path: Path, users: Users) -> None:
    """One row per user, in user_id order, with the unpadded history (most recent last)."""
    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(1, users.n + 1), pa.int64()),
            pa.ListArray.from_arrays(
                pa.array(users.hist_offsets.astype(np.int32)), pa.array(users.hist_items)
            ),
        ],
        names=list(ITEM_SEQ_COLUMNS),
    )
    _write(table, path)


def write_test_labels(path: Path, labels: np.ndarray) -> None:
    """`ID,label`, one row per test row in test.parquet order: what `mmctr score` reads."""
    ids = np.arange(len(labels))
    np.savetxt(
        path,
        np.stack([ids, labels.astype(np.int64)], axis=1),
        fmt="%d",
        delimiter=",",
        header="ID,label",
        comments="",
    )


def write_truth(
    truth_dir: Path, test_label: np.ndarray, valid_p: np.ndarray, test_p: np.ndarray, world: dict[str, Any]
) -> None:
    truth_dir.mkdir(parents=True, exist_ok=True)
    write_test_labels(truth_dir / "test_labels.csv", test_label)
    table = pa.Table.from_arrays(
        [
            pa.array(["valid"] * len(valid_p) + ["test"] * len(test_p), pa.string()),
            pa.array(np.concatenate([np.arange(len(valid_p)), np.arange(len(test_p))]), pa.int64()),
            pa.array(np.concatenate([valid_p, test_p]), pa.float64()),
        ],
        names=["split", "row", "p"],
    )
    _write(table, truth_dir / "click_probability.parquet")
    (truth_dir / "world.json").write_text(json.dumps(world, indent=2) + "\n")
