"""Reference points that use no encoder: seeded random vectors, and the data's own item_emb_d128."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from mmctr.errors import ConfigError, DataError
from mmctr.fusion.base import FusionInput, FusionResult, l2n, output


def random_emb(inp: FusionInput) -> FusionResult:
    """Seeded Gaussian vectors, L2-normalised: what a CTR model gets from an embedding that
    carries no information (it can still memorise ids)."""
    rng = np.random.default_rng(inp.seed)
    rows = l2n(rng.standard_normal((len(inp.item_ids), inp.dim))).astype(np.float32)
    return FusionResult(output(inp, rows), None)


def provided(inp: FusionInput) -> FusionResult:
    """The item_emb_d128 column of the data's item_info.parquet, copied by item id."""
    path = inp.layout.item_info
    table = pq.read_table(path, columns=["item_id", "item_emb_d128"])
    ids = table.column("item_id").to_numpy()
    col = table.column("item_emb_d128").combine_chunks()
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if len(ids) == 0 or values.size % len(ids):
        raise DataError(path, "item_emb_d128", "rows hold lists of different lengths")
    emb = values.reshape(len(ids), -1)
    if emb.shape[1] != inp.dim:
        raise ConfigError(
            f"fusion provided copies {emb.shape[1]}-d vectors from {path}; use --dim {emb.shape[1]}"
        )
    by_id = np.zeros((inp.n_rows, emb.shape[1]), dtype=np.float32)
    if ids.max() >= inp.n_rows:
        raise DataError(path, "item_id", f"holds id {int(ids.max())} beyond the item table (< {inp.n_rows})")
    by_id[ids] = emb
    return FusionResult(output(inp, by_id[inp.item_ids]), None, {"source": str(path)})
