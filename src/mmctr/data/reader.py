"""Read and validate the real MMCTR files into arrays, once.

Each split is loaded into flat numpy arrays (no pandas, nothing per batch); the item table holds
what the models look up by item id as a row index. Every error names the file and the column and
says what was expected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmctr.data.schema import (
    EMB_DIM,
    ITEM_INFO_COLUMNS,
    N_LEVELS,
    SEQ_LEN,
    SPLIT_COLUMNS,
    SPLITS,
    SUBDIR,
    TAGS_LEN,
    Layout,
)
from mmctr.errors import DataError, warn

# What pyarrow raises on a damaged file: besides ArrowInvalid / OSError, a flipped byte in the footer
# can surface as a UnicodeDecodeError (a ValueError) or another ArrowException.
PARQUET_ERRORS = (pa.ArrowException, OSError, ValueError)

# Rows are read this many at a time so that the 100-long int64 lists of a 3.6M-row split never sit
# in memory whole; only the kept max_len columns are, as int32.
_READ_BATCH_ROWS = 262_144


@dataclass
class ItemTable:
    """Per-item features indexed by item_id (row 0 is padding)."""

    tags: np.ndarray  # (n_items, 5) int32, left zero-padded
    emb: np.ndarray  # (n_items, 128) float32, frozen
    likes: np.ndarray  # (n_items,) int64 0..10, from item_feature (0 where unknown)
    views: np.ndarray  # (n_items,) int64 0..10
    source: str = ""  # the item_info file these came from

    @property
    def n_items(self) -> int:
        return int(self.tags.shape[0])

    @property
    def n_tags(self) -> int:
        return int(self.tags.max()) + 1 if self.tags.size else 1

    @property
    def emb_dim(self) -> int:
        return int(self.emb.shape[1])


@dataclass
class SplitArrays:
    """One split as arrays. `hist` keeps the most recent `max_len` items, left zero-padded."""

    name: str
    user_id: np.ndarray  # (N,) int64
    item_id: np.ndarray  # (N,) int64
    likes: np.ndarray  # (N,) int64
    views: np.ndarray  # (N,) int64
    label: np.ndarray  # (N,) float32
    hist: np.ndarray  # (N, max_len) int32
    hist_len: np.ndarray = field(init=False)  # (N,) int32

    def __post_init__(self) -> None:
        self.hist_len = (self.hist > 0).sum(axis=1, dtype=np.int32)

    def __len__(self) -> int:
        return int(self.item_id.shape[0])

    def take(self, rows: np.ndarray) -> SplitArrays:
        return SplitArrays(
            self.name,
            self.user_id[rows],
            self.item_id[rows],
            self.likes[rows],
            self.views[rows],
            self.label[rows],
            self.hist[rows],
        )


@dataclass
class Dataset:
    layout: Layout
    items: ItemTable
    splits: dict[str, SplitArrays]
    max_len: int

    def __getitem__(self, name: str) -> SplitArrays:
        return self.splits[name]


# ----------------------------------------------------------------------------------------------
# low-level helpers


def open_parquet(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise DataError(path, None, "file not found")
    try:
        return pq.ParquetFile(path)
    except PARQUET_ERRORS as err:
        raise DataError(path, None, f"cannot be read as parquet (truncated or corrupt?): {err}") from err


def _check_columns(path: Path, pf: pq.ParquetFile, required: tuple[str, ...]) -> None:
    names = set(pf.schema_arrow.names)
    for col in required:
        if col not in names:
            raise DataError(path, col, f"missing; expected columns {list(required)}, found {sorted(names)}")


def _check_type(path: Path, name: str, typ: pa.DataType, want: str) -> None:
    ok = {
        "int": pa.types.is_integer(typ),
        "number": pa.types.is_integer(typ) or pa.types.is_floating(typ),
        "string": pa.types.is_string(typ) or pa.types.is_large_string(typ),
        "list<int>": (
            pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)
        )
        and pa.types.is_integer(typ.value_type),
        "list<float>": (
            pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)
        )
        and (pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type)),
    }[want]
    if not ok:
        raise DataError(path, name, f"has type {typ}; expected {want}")


def _scalar(path: Path, name: str, arr: pa.ChunkedArray | pa.Array, dtype: type) -> np.ndarray:
    if arr.null_count:
        raise DataError(path, name, f"has {arr.null_count} null values; expected none")
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def _fixed_list(
    path: Path, name: str, arr: pa.ChunkedArray | pa.Array, length: int, dtype: type, row0: int = 0
) -> np.ndarray:
    """A list column whose every row must hold exactly `length` values, as an (N, length) array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        bad = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(path, name, f"row {row0 + bad} is null; expected a list of {length} values")
    if pa.types.is_fixed_size_list(arr.type):
        if arr.type.list_size != length:
            raise DataError(path, name, f"lists have length {arr.type.list_size}; expected {length}")
        values = arr.flatten()
    else:
        lengths = np.diff(np.asarray(arr.offsets))
        wrong = np.flatnonzero(lengths != length)
        if wrong.size:
            r = int(wrong[0])
            raise DataError(
                path,
                name,
                f"row {row0 + r} has a list of length {int(lengths[r])}; every row must have exactly {length}",
            )
        values = arr.flatten()
    if values.null_count:
        raise DataError(path, name, f"has {values.null_count} null list elements")
    out = np.asarray(values.to_numpy(zero_copy_only=False), dtype=dtype)
    return out.reshape(len(arr), length)


# ----------------------------------------------------------------------------------------------
# item_info / item_feature


def read_item_info(path: Path, item_feature: Path | None = None) -> ItemTable:
    """Read item_info.parquet (row index == item_id, row 0 padding) and, when given, the levels
    from item_feature.parquet."""
    path = Path(path)
    pf = open_parquet(path)
    _check_columns(path, pf, ITEM_INFO_COLUMNS)
    schema = pf.schema_arrow
    _check_type(path, "item_id", schema.field("item_id").type, "int")
    _check_type(path, "item_tags", schema.field("item_tags").type, "list<int>")
    _check_type(path, "item_emb_d128", schema.field("item_emb_d128").type, "list<float>")
    try:
        table = pf.read(columns=list(ITEM_INFO_COLUMNS))
    except PARQUET_ERRORS as err:
        raise DataError(path, None, f"cannot be read as parquet (truncated or corrupt?): {err}") from err
    ids = _scalar(path, "item_id", table.column("item_id"), np.int64)
    n = len(ids)
    if n < 2:
        raise DataError(path, None, f"has {n} rows; expected padding row 0 and at least one item")
    expect = np.arange(n)
    if not np.array_equal(ids, expect):
        r = int(np.flatnonzero(ids != expect)[0])
        raise DataError(
            path,
            "item_id",
            f"row {r} holds item_id {int(ids[r])}; rows must be ordered so that row index == item_id (0..{n - 1})",
        )
    tags = _fixed_list(path, "item_tags", table.column("item_tags"), TAGS_LEN, np.int64)
    if tags.min() < 0:
        raise DataError(path, "item_tags", "holds negative tag ids; expected ids >= 0 with 0 as padding")
    emb = _fixed_list(path, "item_emb_d128", table.column("item_emb_d128"), EMB_DIM, np.float32)
    finite = np.isfinite(emb)
    if not finite.all():
        r = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise DataError(path, "item_emb_d128", f"row {r} (item_id {r}) holds NaN or infinite values")
    if np.any(emb[0] != 0) or np.any(tags[0] != 0):
        raise DataError(
            path,
            "item_emb_d128" if np.any(emb[0] != 0) else "item_tags",
            "row 0 is the padding item and must be all zeros",
        )
    likes = np.zeros(n, dtype=np.int64)
    views = np.zeros(n, dtype=np.int64)
    if item_feature is not None and Path(item_feature).exists():
        likes, views = read_item_levels(Path(item_feature), n)
    return ItemTable(tags=tags.astype(np.int32), emb=emb, likes=likes, views=views, source=str(path))


def read_item_levels(path: Path, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """likes_level / views_level per item from item_feature.parquet (item_id 1..n-1, no row 0)."""
    pf = open_parquet(path)
    _check_columns(path, pf, ("item_id", "likes_level", "views_level"))
    for col in ("item_id", "likes_level", "views_level"):
        _check_type(path, col, pf.schema_arrow.field(col).type, "int")
    try:
        table = pf.read(columns=["item_id", "likes_level", "views_level"])
    except PARQUET_ERRORS as err:
        raise DataError(path, None, f"cannot be read as parquet (truncated or corrupt?): {err}") from err
    ids = _scalar(path, "item_id", table.column("item_id"), np.int64)
    if ids.size and (ids.min() < 1 or ids.max() >= n_items):
        raise DataError(
            path,
            "item_id",
            f"ids must lie in 1..{n_items - 1} (the rows of item_info); found {ids.min()}..{ids.max()}",
        )
    likes = np.zeros(n_items, dtype=np.int64)
    views = np.zeros(n_items, dtype=np.int64)
    for name, out in (("likes_level", likes), ("views_level", views)):
        v = _scalar(path, name, table.column(name), np.int64)
        if v.size and (v.min() < 0 or v.max() >= N_LEVELS):
            raise DataError(path, name, f"values must lie in 0..{N_LEVELS - 1}; found {v.min()}..{v.max()}")
        out[ids] = v
    return likes, views


# ----------------------------------------------------------------------------------------------
# splits


SPLIT_TYPES = (
    ("user_id", "int"),
    ("item_id", "int"),
    ("likes_level", "int"),
    ("views_level", "int"),
    ("label", "number"),
    ("item_seq", "list<int>"),
)


def open_split(path: Path, max_len: int = SEQ_LEN) -> pq.ParquetFile:
    """A split file opened, with its columns and their types checked (no rows read yet)."""
    path = Path(path)
    if not 1 <= max_len <= SEQ_LEN:
        raise ValueError(f"max_len must be in 1..{SEQ_LEN}, got {max_len}")
    pf = open_parquet(path)
    _check_columns(path, pf, SPLIT_COLUMNS)
    schema = pf.schema_arrow
    for col, want in SPLIT_TYPES:
        _check_type(path, col, schema.field(col).type, want)
    return pf


def split_rows(
    path: Path, batch: pa.RecordBatch | pa.Table, n_items: int, max_len: int, row0: int, name: str
) -> SplitArrays:
    """Rows of a split file (a record batch read from it, starting at file row `row0`) as arrays,
    every value validated; errors name the file row."""
    user = _scalar(path, "user_id", batch.column("user_id"), np.int64)
    item = _scalar(path, "item_id", batch.column("item_id"), np.int64)
    likes = _scalar(path, "likes_level", batch.column("likes_level"), np.int64)
    views = _scalar(path, "views_level", batch.column("views_level"), np.int64)
    label = _scalar(path, "label", batch.column("label"), np.float32)
    seq = _fixed_list(path, "item_seq", batch.column("item_seq"), SEQ_LEN, np.int64, row0=row0)
    _check_seq(path, seq, n_items, row0)
    _check_range(path, "item_id", item, 1, n_items - 1, "an item id present in item_info (1..{hi})", row0)
    _check_range(path, "likes_level", likes, 0, N_LEVELS - 1, "a level in 0..{hi}", row0)
    _check_range(path, "views_level", views, 0, N_LEVELS - 1, "a level in 0..{hi}", row0)
    if not np.isfinite(label).all():
        r = int(np.flatnonzero(~np.isfinite(label))[0])
        raise DataError(path, "label", f"row {row0 + r} holds NaN or infinite values")
    outside = (label < 0) | (label > 1)
    if outside.any():
        r = int(np.flatnonzero(outside)[0])
        raise DataError(
            path, "label", f"row {row0 + r} holds {float(label[r])}; expected a click label 0 or 1"
        )
    hist = np.ascontiguousarray(seq[:, SEQ_LEN - max_len :], dtype=np.int32)
    return SplitArrays(name, user, item, likes, views, label, hist)


def read_split(path: Path, n_items: int, max_len: int = SEQ_LEN, name: str = "") -> SplitArrays:
    """Read one split file, validating every row, keeping the most recent `max_len` history items."""
    path = Path(path)
    pf = open_split(path, max_len)
    n = pf.metadata.num_rows
    user = np.empty(n, np.int64)
    item = np.empty(n, np.int64)
    likes = np.empty(n, np.int64)
    views = np.empty(n, np.int64)
    label = np.empty(n, np.float32)
    hist = np.empty((n, max_len), np.int32)
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=_READ_BATCH_ROWS, columns=list(SPLIT_COLUMNS)):
            part = split_rows(path, batch, n_items, max_len, row, name)
            sl = slice(row, row + len(part))
            user[sl], item[sl], likes[sl], views[sl] = part.user_id, part.item_id, part.likes, part.views
            label[sl], hist[sl] = part.label, part.hist
            row += len(part)
    except PARQUET_ERRORS as err:
        raise DataError(path, None, f"cannot be read as parquet (truncated or corrupt?): {err}") from err
    if row != n:
        raise DataError(path, None, f"holds {row} readable rows but its footer says {n}")
    return SplitArrays(name or path.stem, user, item, likes, views, label, hist)


def _check_range(path: Path, col: str, v: np.ndarray, lo: int, hi: int, what: str, row0: int = 0) -> None:
    bad = np.flatnonzero((v < lo) | (v > hi))
    if bad.size:
        r = int(bad[0])
        raise DataError(
            path,
            col,
            f"row {row0 + r} holds {int(v[r])}; expected {what.format(hi=hi)} ({bad.size} out-of-range rows among rows {row0}..{row0 + len(v) - 1})",
        )


def _check_seq(path: Path, seq: np.ndarray, n_items: int, row0: int) -> None:
    bad = (seq < 0) | (seq >= n_items)
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        raise DataError(
            path,
            "item_seq",
            f"row {row0 + r} position {c} holds item id {int(seq[r, c])}; expected 0 (padding) or an item id in 1..{n_items - 1} (rows of item_info)",
        )
    real = seq > 0
    # Left padding: once a real item appears, no padding may follow it.
    gap = real[:, :-1] & ~real[:, 1:]
    if gap.any():
        r = int(np.flatnonzero(gap.any(axis=1))[0])
        raise DataError(
            path,
            "item_seq",
            f"row {row0 + r} has padding (0) after a real item; sequences must be LEFT zero-padded, most recent item last",
        )


# ----------------------------------------------------------------------------------------------


def true_click_probability(path: Path, split: str) -> np.ndarray:
    """The generator's true click probability of every row of `split` (truth/click_probability.parquet),
    in row order. Reporting only: training never reads truth/."""
    t = pq.read_table(path).to_pydict()
    where = np.asarray(t["split"]) == split
    rows = np.asarray(t["row"])[where]
    p = np.empty(len(rows))
    p[rows] = np.asarray(t["p"])[where]
    return p


def check_data_root(root: Path | str) -> Layout:
    """The layout of a data root, with a hint when the user named the inner folder instead."""
    layout = Layout(Path(root))
    if not layout.root.is_dir():
        raise DataError(layout.root, None, f"data root not found; expected a directory holding {SUBDIR}/")
    if not layout.dataset_dir.is_dir():
        hint = ""
        if (layout.root / "train.parquet").exists() or (layout.root / "test.parquet").exists():
            hint = f"; did you mean its parent, --data {layout.root.parent}?"
        raise DataError(layout.root, None, f"no {SUBDIR}/ folder in this data root{hint}")
    return layout


def data_fingerprint(root: Path | str) -> str | None:
    """A short hash of a data root's own item_info.parquet: which data set a run was trained on."""
    path = Layout(Path(root)).item_info
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _check_same_count(path: Path, own_path: Path) -> None:
    """An item_info given with --item-info must describe the data root's items (Task 1 changes
    only the embedding): the same number of rows..."""
    rows = open_parquet(path).metadata.num_rows
    own_rows = open_parquet(own_path).metadata.num_rows
    if own_rows != rows:
        raise DataError(
            path,
            "item_id",
            f"has {rows:,} rows but this data root's {own_path} has {own_rows:,}: it was made "
            "for another data set. Run `mmctr embed --data` on this data root",
        )


def _check_same_tags(path: Path, items: ItemTable, own_path: Path) -> None:
    """... and, where it differs, the same tags (a warning: the user may have meant it)."""
    own_tags = pq.read_table(own_path, columns=["item_tags"]).column("item_tags")
    own = np.asarray(own_tags.combine_chunks().flatten().to_numpy(), np.int64)
    if own.size != items.tags.size:
        return
    own = own.reshape(items.tags.shape)
    if not np.array_equal(own, items.tags):
        differ = int((own != items.tags).any(axis=1).sum())
        warn(
            f"{path}: item_tags differ from {own_path} on {differ:,} of {len(own):,} items; was it made "
            "for another data set of the same size?"
        )


def load_dataset(
    root: Path | str,
    max_len: int = 64,
    splits: tuple[str, ...] = SPLITS,
    item_info: Path | str | None = None,
) -> Dataset:
    """Load the item table and the requested splits from a data root in the published layout.

    `item_info` overrides the provided item_info.parquet (the Task-1 protocol: only the embedding
    changes)."""
    layout = check_data_root(root)
    info_path = Path(item_info) if item_info else layout.item_info
    if item_info and layout.item_info.exists():
        _check_same_count(info_path, layout.item_info)
    items = read_item_info(info_path, layout.item_feature)
    if item_info and layout.item_info.exists():
        _check_same_tags(info_path, items, layout.item_info)
    loaded = {s: read_split(layout.split(s), items.n_items, max_len, s) for s in splits}
    return Dataset(layout=layout, items=items, splits=loaded, max_len=max_len)
