"""Train rows as the loop consumes them: in memory, or streamed from the parquet file.

`InMemorySplit` is a loaded split (the default). `StreamedSplit` (`mmctr train --stream`) never holds
more than a bounded shuffle buffer: each epoch it reads its rank's row groups of the split file in a
shuffled order, validates every row as `read_split` does, and shuffles within a buffer of
`buffer_rows` rows, so peak memory does not grow with the number of train rows. With several
processes, row group g belongs to rank g mod N; every rank stops after as many rows as the smallest
share holds, so all ranks take the same number of steps.

Both give the same interface to the loop: `len()` (rows an epoch) and
`batches(batch_size, rng, skip)`; with the same RNG state, the same batches come out again, which
is what resuming mid-epoch relies on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from mmctr.data.batches import Batch, iter_batches, make_batch
from mmctr.data.reader import SPLIT_COLUMNS, SplitArrays, open_split, split_rows
from mmctr.data.schema import SEQ_LEN
from mmctr.errors import ConfigError, DataError

DEFAULT_BUFFER_ROWS = 262_144


class InMemorySplit:
    def __init__(self, split: SplitArrays):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def batches(self, batch_size: int, rng: np.random.Generator, skip: int = 0) -> Iterator[Batch]:
        return iter_batches(self.split, batch_size, shuffle=True, rng=rng, skip=skip)


def _concat(parts: list[SplitArrays]) -> SplitArrays:
    if len(parts) == 1:
        return parts[0]
    return SplitArrays(
        parts[0].name,
        np.concatenate([p.user_id for p in parts]),
        np.concatenate([p.item_id for p in parts]),
        np.concatenate([p.likes for p in parts]),
        np.concatenate([p.views for p in parts]),
        np.concatenate([p.label for p in parts]),
        np.concatenate([p.hist for p in parts]),
    )


class StreamedSplit:
    def __init__(
        self,
        path: Path,
        n_items: int,
        max_len: int = SEQ_LEN,
        rank: int = 0,
        world_size: int = 1,
        buffer_rows: int = DEFAULT_BUFFER_ROWS,
        name: str = "train",
    ):
        self.path = Path(path)
        self.n_items, self.max_len, self.name = n_items, max_len, name
        if buffer_rows < 1:
            raise ConfigError(f"--stream-buffer {buffer_rows}: expected at least 1 row")
        self.buffer_rows = buffer_rows
        pf = open_split(self.path, max_len)
        md = pf.metadata
        sizes = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
        if len(sizes) < world_size:
            raise DataError(
                self.path,
                None,
                f"has {len(sizes)} row group(s); streaming with {world_size} processes needs at least "
                f"{world_size} (one per process). Rewrite it with smaller row groups, e.g. "
                "pyarrow.parquet.write_table(table, path, row_group_size=131072)",
            )
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.groups = [g for g in range(len(sizes)) if g % world_size == rank]
        share = [sum(sizes[g] for g in range(r, len(sizes), world_size)) for r in range(world_size)]
        self.rows = min(share)
        if self.rows == 0:
            raise DataError(self.path, None, "has no rows to train on")

    def __len__(self) -> int:
        return self.rows

    def _read(self, pf, g: int) -> SplitArrays:
        try:
            table = pf.read_row_group(g, columns=list(SPLIT_COLUMNS))
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(
                self.path, None, f"row group {g} cannot be read (truncated or corrupt?): {err}"
            ) from err
        return split_rows(self.path, table, self.n_items, self.max_len, int(self.starts[g]), self.name)

    def batches(self, batch_size: int, rng: np.random.Generator, skip: int = 0) -> Iterator[Batch]:
        pf = open_split(self.path, self.max_len)
        left = self.rows  # rows still to give this epoch
        n_batch = 0
        parts: list[SplitArrays] = []
        buffered = 0

        def drain(final: bool) -> Iterator[Batch]:
            nonlocal parts, buffered, left, n_batch
            buf = _concat(parts)
            order = rng.permutation(len(buf))
            keep = len(buf) if final else len(buf) - len(buf) % batch_size
            for start in range(0, keep, batch_size):
                rows = np.sort(order[start : min(start + batch_size, keep, start + left)])
                if len(rows) == 0:
                    break
                left -= len(rows)
                n_batch += 1
                if n_batch > skip:
                    yield make_batch(buf, rows)
                if left == 0:
                    break
            rest = order[keep:]
            parts = [buf.take(np.sort(rest))] if len(rest) and left else []
            buffered = sum(len(p) for p in parts)

        for g in rng.permutation(self.groups):
            if left == 0:
                break
            part = self._read(pf, int(g))
            parts.append(part)
            buffered += len(part)
            if buffered >= self.buffer_rows:
                yield from drain(final=False)
        if parts and left:
            yield from drain(final=True)
