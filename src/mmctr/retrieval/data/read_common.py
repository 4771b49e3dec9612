"""Checks shared by the Track 1 readers: every problem becomes a DataError naming the file, the
column (or JSON field) and the row (or line)."""

from __future__ import annotations

import bisect
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mmctr.data.reader import PARQUET_ERRORS, open_parquet  # noqa: F401  (the one parquet opener; readers import it from here)
from mmctr.errors import DataError

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def read_table(path: Path, pf: pq.ParquetFile, columns: list[str]) -> pa.Table:
    try:
        return pf.read(columns=columns)
    except PARQUET_ERRORS as err:
        raise DataError(path, None, f"cannot be read as parquet (truncated or corrupt?): {err}") from err


def require_columns(path: Path, names: list[str], required: tuple[str, ...], hint: str = "") -> None:
    have = set(names)
    for col in required:
        if col not in have:
            raise DataError(
                path, col, f"missing; expected columns {list(required)}, found {sorted(have)}{hint}"
            )


def is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def pylist(path: Path, col: str, arr: pa.ChunkedArray | pa.Array) -> list:
    """The column's values; text that is not UTF-8 (a damaged page of the file) is a DataError."""
    try:
        return arr.to_pylist()
    except UnicodeDecodeError as err:
        raise DataError(
            path, col, f"holds text that is not UTF-8 ({err.reason}); the file is damaged"
        ) from None


def ids(path: Path, table: pa.Table, col: str) -> list[str]:
    """An id column of strings or integers, as strings; nulls are errors."""
    arr = table.column(col)
    if not (is_text(arr.type) or pa.types.is_integer(arr.type)):
        raise DataError(path, col, f"has type {arr.type}; expected string (or integer) ids")
    values = pylist(path, col, arr)
    for r, v in enumerate(values):
        if v is None:
            raise DataError(path, col, f"row {r} is null; every row needs an id")
    return [str(v) for v in values]


def texts(path: Path, table: pa.Table, col: str, *, required: bool = False) -> list[str]:
    """A text column; nulls read as "" unless required."""
    arr = table.column(col)
    if pa.types.is_null(arr.type):
        if required:
            raise DataError(path, col, "is entirely null; expected text")
        return [""] * len(arr)
    if not is_text(arr.type):
        raise DataError(path, col, f"has type {arr.type}; expected string")
    values = pylist(path, col, arr)
    if required:
        for r, v in enumerate(values):
            if v is None:
                raise DataError(path, col, f"row {r} is null; expected text")
    return ["" if v is None else v for v in values]


def id_lists(path: Path, table: pa.Table, col: str) -> list[list[str]]:
    arr = table.column(col)
    if pa.types.is_null(arr.type):
        return [[] for _ in range(len(arr))]
    # list<null> is what an all-empty list column becomes when written from pandas (the challenge file).
    ok_values = lambda t: is_text(t) or pa.types.is_integer(t) or pa.types.is_null(t)  # noqa: E731
    if not is_list(arr.type) or not ok_values(arr.type.value_type):
        raise DataError(path, col, f"has type {arr.type}; expected a list of ids")
    return [[str(x) for x in (v or []) if x is not None] for v in pylist(path, col, arr)]


def first_duplicate(values: list) -> tuple[int, int] | None:
    """(row, first row) of the first value seen twice, or None."""
    seen: dict = {}
    for r, v in enumerate(values):
        if v in seen:
            return r, seen[v]
        seen[v] = r
    return None


def safe_relpath(rel: str, file: Path, column: str, where: str) -> str:
    """A data file's path to an image, refused when it is absolute or climbs out of its folder."""
    if rel is None or rel == "":
        raise DataError(file, column, f"{where}: empty image path")
    if os.path.isabs(rel) or Path(rel).drive or rel.startswith(("/", "\\")):
        raise DataError(
            file, column, f"{where}: image path {rel!r} is absolute; paths must stay inside the data folder"
        )
    norm = os.path.normpath(rel)
    if norm == ".." or norm.startswith(".." + os.sep) or norm.startswith("../"):
        raise DataError(file, column, f"{where}: image path {rel!r} leaves the data folder ('..'); refused")
    return norm


def image_problem(data: bytes | None) -> str | None:
    """Why `data` is not a readable image, or None."""
    if not data:
        return "no image bytes"
    if not (data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        return "bytes are not a JPEG/PNG/GIF/BMP/TIFF/WebP image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below instead
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Image.DecompressionBombError as err:
        return f"refused: {err}"
    except Exception as err:  # a decoder fed arbitrary bytes: any of its errors means "not an image"
        return f"image header cannot be read ({type(err).__name__}: {err})"
    limit = int(Image.MAX_IMAGE_PIXELS or 0)  # the same limit as mmctr.encoders.image.max_image_pixels
    if limit and w * h > limit:
        return f"{w}x{h} pixels is more than {limit:,}; refused (decompression bomb?)"
    return None


def checked_image(data: bytes | None, file: Path, column: str, where: str) -> bytes:
    problem = image_problem(data)
    if problem:
        raise DataError(file, column, f"{where}: {problem}")
    return data  # type: ignore[return-value]


def check_inside(path: Path, base: Path, file: Path, column: str, where: str) -> Path:
    """`path`, refused when it resolves outside `base` (a symlink pointing out of the data folder)."""
    if not Path(path).resolve().is_relative_to(Path(base).resolve()):
        raise DataError(
            file,
            column,
            f"{where}: image {path} resolves to {Path(path).resolve()}, outside {base} (a symlink out of the "
            "data folder?); refused",
        )
    return path


def read_image_file(path: Path, file: Path, column: str, where: str) -> bytes:
    """The checked bytes of an image file named by a row of `file`; it must lie in `file`'s folder."""
    check_inside(path, file.parent, file, column, where)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(file, column, f"{where}: image file {path} cannot be read ({err.strerror})") from err
    return checked_image(data, file, column, where)


def struct_bytes(v: object) -> bytes | None:
    """The bytes of an HF hub Image struct ({"bytes", "path"})."""
    return None if v is None else v.get("bytes")  # type: ignore[union-attr]


class LazyColumn:
    """Row i of one parquet column, reading one row group at a time and keeping the last one, so a
    reader that walks pages in order never holds more than a row group of images. Picklable (the
    open file is dropped and reopened), so a DocSet can go to worker processes."""

    def __init__(self, path: Path, column: str, pick: Callable[[object], object] | None = None):
        self.path, self.column, self.pick = path, column, pick
        self.pf: pq.ParquetFile | None = open_parquet(path)
        md = self.pf.metadata
        self.starts = [0]
        for g in range(md.num_row_groups):
            self.starts.append(self.starts[-1] + md.row_group(g).num_rows)
        self._group = -1
        self._values: list = []

    def __getstate__(self) -> dict:
        return {**self.__dict__, "pf": None, "_group": -1, "_values": []}

    def __len__(self) -> int:
        return self.starts[-1]

    def __call__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of {self.path} ({len(self)} rows)")
        g = self._group
        if g < 0 or not self.starts[g] <= i < self.starts[g + 1]:
            g = bisect.bisect_right(self.starts, i) - 1
            if self.pf is None:
                self.pf = open_parquet(self.path)
            try:
                col = self.pf.read_row_group(g, columns=[self.column]).column(0)
                self._values, self._group = col.to_pylist(), g
            except PARQUET_ERRORS as err:  # UnicodeDecodeError (a damaged text page) among them
                raise DataError(self.path, self.column, f"row group {g} cannot be read: {err}") from err
        v = self._values[i - self.starts[g]]
        return self.pick(v) if self.pick else v


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line."""
    if not path.exists():
        raise DataError(path, None, "file not found")
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    path, None, f"line {n}: not UTF-8 text ({err.reason} at byte {err.start})"
                ) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(path, None, f"line {n}: not JSON ({err.msg})") from err
            if not isinstance(obj, dict):
                raise DataError(path, None, f"line {n}: expected a JSON object, found {type(obj).__name__}")
            yield n, obj
