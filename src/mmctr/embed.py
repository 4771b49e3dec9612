"""The Task-1 pipeline: read items -> encode titles and covers (cached) -> fuse -> write item_info.

The output is an item_info parquet in the challenge's schema (item_id int64, item_tags list<int64>
of 5 copied from the data, item_emb_d128 list<float32>), row index == item_id, row 0 all zeros,
written to a temporary file and renamed. A JSON beside it says how it was made.

Alignment is by item id throughout: titles by item_feature's item_id column, covers by the id in
each file name, outputs by row == id. Two checks prove it on every run: a few items are re-encoded
one at a time from their own inputs and must match their rows, and the written file is read back.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmctr.data.reader import read_item_info
from mmctr.data.schema import EMB_DIM, TAGS_LEN, Layout
from mmctr.encoders import (
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    EncoderOptions,
    build_encoder,
)
from mmctr.encoders.base import auto_threads
from mmctr.encoders.cache import EmbeddingCache, default_cache_dir
from mmctr.encoders.image import list_images
from mmctr.encoders.runner import ModalityFeatures, check_alignment, encode_images, encode_titles
from mmctr.errors import DataError, MMCTRError
from mmctr.fusion import DEFAULT_FUSION, FusionInput, FusionOptions, get_fusion
from mmctr.outputs import OutputKind, check_out


@dataclass
class EmbedConfig:
    data: Path
    out: Path
    text_encoder: str = DEFAULT_TEXT_ENCODER
    image_encoder: str = DEFAULT_IMAGE_ENCODER
    fusion: str = DEFAULT_FUSION
    dim: int = EMB_DIM
    cache_dir: Path | None = None  # None: $MMCTR_CACHE or ~/.cache/mmctr
    use_cache: bool = True
    encoder: EncoderOptions = field(default_factory=EncoderOptions)
    fusion_options: FusionOptions = field(default_factory=FusionOptions)
    missing: str = "mean"  # fallback for items without a usable cover / title: mean | zeros
    seed: int = 0
    progress: bool = True
    check_samples: int = 8  # items re-encoded one by one to prove alignment
    threads: int = 0  # torch intra-op threads; 0: the cores not busy with other processes
    overwrite: bool = False  # replace an existing --out (only an item_info parquet, see mmctr.outputs)


@dataclass
class ItemCatalog:
    """The items of a data root, by id."""

    n_rows: int  # rows of item_info: N + 1
    item_ids: np.ndarray  # (N,) 1..N
    tags: np.ndarray  # (n_rows, 5) int64, from item_info
    titles: dict[int, str | None]  # from item_feature; absent or null -> None


def read_catalog(layout: Layout) -> ItemCatalog:
    items = read_item_info(layout.item_info)  # validated: row index == item_id, row 0 zeros
    n_rows = items.n_items
    path = layout.item_feature
    if not path.exists():
        raise DataError(path, None, "file not found; titles are read from item_feature.parquet")
    try:
        table = pq.read_table(path, columns=["item_id", "item_title"])
    except (pa.ArrowInvalid, OSError, KeyError) as err:
        raise DataError(path, None, f"cannot read columns item_id, item_title: {err}") from err
    ids = table.column("item_id").to_numpy(zero_copy_only=False)
    if not np.issubdtype(ids.dtype, np.integer):
        raise DataError(path, "item_id", f"has type {table.schema.field('item_id').type}; expected integers")
    if ids.size and (ids.min() < 1 or ids.max() >= n_rows):
        raise DataError(
            path,
            "item_id",
            f"ids must lie in 1..{n_rows - 1} (the rows of item_info); found {ids.min()}..{ids.max()}",
        )
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(path, "item_id", f"item {int(uniq[counts > 1][0])} appears more than once")
    titles: dict[int, str | None] = dict(
        zip(ids.tolist(), table.column("item_title").to_pylist(), strict=True)
    )
    return ItemCatalog(
        n_rows=n_rows,
        item_ids=np.arange(1, n_rows, dtype=np.int64),
        tags=items.tags.astype(np.int64),
        titles=titles,
    )


def _list_array(matrix: np.ndarray, value_type: pa.DataType) -> pa.Array:
    n, width = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=value_type))


def _is_item_info(path: Path) -> bool:
    """An earlier output of `mmctr embed`: a parquet with the item_info columns."""
    from mmctr.data.reader import PARQUET_ERRORS

    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except PARQUET_ERRORS:
        return False
    return all(c in names for c in ("item_id", "item_tags", "item_emb_d128"))


ITEM_INFO_FILE = OutputKind("item_info parquet", _is_item_info, is_dir=False)


def write_item_info(path: Path, tags: np.ndarray, emb: np.ndarray) -> None:
    """Write item_info in the challenge schema, atomically (temporary file, then rename)."""
    if tags.shape[1] != TAGS_LEN or len(tags) != len(emb):
        raise ValueError(f"tags {tags.shape} / embeddings {emb.shape} do not fit item_info")
    table = pa.table(
        {
            "item_id": pa.array(np.arange(len(emb), dtype=np.int64)),
            "item_tags": _list_array(tags.astype(np.int64), pa.int64()),
            "item_emb_d128": _list_array(emb.astype(np.float32), pa.float32()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def verify_written(path: Path, emb: np.ndarray) -> dict[str, Any]:
    """Read the file back: row index == item_id, row 0 zeros, vectors equal to what was fused."""
    t = pq.read_table(path)
    ids = t.column("item_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(emb))):
        raise DataError(path, "item_id", "written rows are not ordered by item id")
    back = np.asarray(t.column("item_emb_d128").combine_chunks().flatten().to_numpy(), np.float32)
    back = back.reshape(len(ids), -1)
    if not np.array_equal(back, emb):
        raise DataError(path, "item_emb_d128", "written vectors differ from the fused ones")
    if np.any(back[0] != 0):
        raise DataError(path, "item_emb_d128", "row 0 (padding) is not all zeros")
    return {"item_id_equals_row": True, "row0_zero": True, "rows": int(len(ids))}


def json_path(out: Path) -> Path:
    return out.with_suffix(".json")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def encode_modality(
    cfg: EmbedConfig, modality: str, layout: Layout, catalog: ItemCatalog, ids, cache_root: Path
):
    """Encode the titles or covers of `ids` (through the cache unless cfg.use_cache is off):
    (encoder, features, the cover listing or None for titles)."""
    spec = cfg.text_encoder if modality == "text" else cfg.image_encoder
    encoder = build_encoder(spec, modality, cfg.encoder)
    cache = (
        EmbeddingCache(cache_root, modality, encoder.cache_key(), encoder.identity())
        if cfg.use_cache
        else None
    )
    if modality == "text":
        feats = encode_titles(encoder, catalog.titles, ids, catalog.n_rows, cache, cfg.progress, cfg.missing)
        return encoder, feats, None
    listing = list_images(layout.images_dir)
    feats = encode_images(
        encoder, listing, ids, catalog.n_rows, cache, cfg.progress, cfg.missing, cfg.encoder.workers
    )
    return encoder, feats, listing


def encode_shard(cfg: EmbedConfig, rank: int, size: int, log: Callable[[str], None] = _stderr) -> int:
    """Encode every `size`-th item starting at `rank` into the shared embedding cache (no output
    file): what each process of `torchrun -m mmctr embed` does before rank 0 writes the parquet
    from the cache. Returns how many items this rank handled."""
    layout = Layout(Path(cfg.data))
    fusion = get_fusion(cfg.fusion)
    catalog = read_catalog(layout)
    ids = catalog.item_ids[rank::size]
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    for modality in fusion.needs:
        _, feats, _ = encode_modality(cfg, modality, layout, catalog, ids, cache_root)
        s = feats.stats
        log(
            f"rank {rank}: {modality}: {len(ids):,} items, {s.from_cache:,} from cache, {s.encoded:,} encoded"
        )
    return len(ids)


def embed(cfg: EmbedConfig, log: Callable[[str], None] = _stderr) -> dict[str, Any] | None:
    """Run the pipeline; return the report that is also written as JSON beside `cfg.out`.

    Under torchrun (WORLD_SIZE > 1) every process first encodes its share of the items into the
    embedding cache (`encode_shard`); rank 0 then runs the whole pipeline, which finds every vector
    in the cache, and writes the one parquet. The other ranks return None. With several machines
    the cache must be on a file system they share (--cache-dir)."""
    from mmctr.training.distributed import barrier, finish, init_world

    check_out(Path(cfg.out), ITEM_INFO_FILE, cfg.overwrite)  # before minutes of encoding
    world = init_world()
    if world.distributed:
        if not cfg.use_cache:
            raise MMCTRError("--no-cache: the processes of a torchrun job share their work through the cache")
        try:
            encode_shard(cfg, world.rank, world.size, log)
            barrier(world)
            return _embed_and_report(cfg, log, processes=world.size) if world.main else None
        finally:
            finish(world)
    return _embed_and_report(cfg, log)


def _embed_and_report(cfg: EmbedConfig, log: Callable[[str], None], processes: int = 1) -> dict[str, Any]:
    import torch

    load_average = os.getloadavg()[0]
    threads = cfg.threads if cfg.threads > 0 else auto_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    log(f"torch threads: {threads} (load average {load_average:.1f} on {os.cpu_count()} cores)")
    try:
        report = _embed(cfg, log)
    finally:
        torch.set_num_threads(previous)  # a library call leaves the process as it found it
    report["threads"] = threads
    report["processes"] = processes
    report["load_average_at_start"] = round(load_average, 2)
    jp = json_path(Path(cfg.out))
    tmp = jp.with_name(f".{jp.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(report, indent=2, default=str))
        os.replace(tmp, jp)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _embed(cfg: EmbedConfig, log: Callable[[str], None]) -> dict[str, Any]:
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    layout = Layout(Path(cfg.data))
    fusion = get_fusion(cfg.fusion)
    if cfg.dim < 2:
        raise MMCTRError(f"--dim {cfg.dim}: expected at least 2")
    if cfg.dim != EMB_DIM:
        log(f"note: --dim {cfg.dim}; the baseline reader and DIN expect item_emb_d128 of {EMB_DIM}")

    t = time.perf_counter()
    catalog = read_catalog(layout)
    seconds["read_items"] = time.perf_counter() - t
    log(f"{len(catalog.item_ids):,} items in {layout.item_info}")
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()

    features: dict[str, ModalityFeatures] = {}
    identities: dict[str, dict[str, Any]] = {}
    alignment: dict[str, Any] = {}
    images_report: dict[str, Any] = {}
    for modality in fusion.needs:
        t = time.perf_counter()
        encoder, feats, listing = encode_modality(
            cfg, modality, layout, catalog, catalog.item_ids, cache_root
        )
        identities[modality] = encoder.identity()
        if listing is None:
            inputs: dict[int, Any] = {i: s for i, s in catalog.titles.items() if s is not None}
        else:
            inputs = {i: str(p) for i, p in listing.paths.items()}
            extra = sorted(i for i in listing.paths if not 1 <= i < catalog.n_rows)
            images_report = {
                "dir": str(layout.images_dir),
                "files_with_item_id": len(listing),
                "missing": feats.stats.missing,
                "unreadable": feats.stats.unreadable,
                "fallback": cfg.missing,
                "unrecognised_files": len(listing.unrecognised),
                "unrecognised_examples": listing.unrecognised[:10],
                "ids_not_in_item_table": len(extra),
            }
        seconds[f"encode_{modality}"] = time.perf_counter() - t
        s = feats.stats
        rate = f", {s.items_per_s:,.1f} items/s" if s.encoded else ""
        log(
            f"{modality}: {encoder.spec} {s.dim}-d on {s.device}/{s.precision}: {s.from_cache:,} from cache, "
            f"{s.encoded:,} encoded in {s.encode_seconds:.1f}s{rate}"
        )
        if s.missing or s.unreadable:
            what = "cover file" if modality == "image" else "title"
            log(
                f"warning: {s.missing:,} of {s.items:,} items have no {what} (e.g. ids {s.missing_ids[:5]}), "
                f"{s.unreadable:,} unreadable {list(s.unreadable_examples.items())[:2]}; they get the "
                f"{'mean ' + modality + ' embedding of the other items' if cfg.missing == 'mean' else 'zero vector'}"
            )
        alignment[modality] = (
            check_alignment(encoder, feats, inputs, cfg.check_samples, cfg.seed)
            if encoder.loaded
            else {"checked": 0, "note": "every vector came from the cache, keyed by each item's own content"}
        )
        features[modality] = feats
        identities[modality]["spec"] = encoder.spec

    t = time.perf_counter()
    result = fusion.fuse(
        FusionInput(
            features={m: f.matrix for m, f in features.items()},
            item_ids=catalog.item_ids,
            n_rows=catalog.n_rows,
            dim=cfg.dim,
            seed=cfg.seed,
            layout=layout,
            encoders=identities,
            options=cfg.fusion_options,
        )
    )
    seconds["fusion"] = time.perf_counter() - t
    emb = result.emb
    if emb.shape != (catalog.n_rows, cfg.dim) or not np.isfinite(emb).all():
        raise MMCTRError(f"fusion {cfg.fusion} returned {emb.shape} (finite: {np.isfinite(emb).all()})")
    emb[0] = 0.0

    t = time.perf_counter()
    out = Path(cfg.out)
    write_item_info(out, catalog.tags, emb)
    alignment["written_file"] = verify_written(out, emb)
    seconds["write"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_start

    from mmctr import __version__

    report = {
        "output": str(out),
        "data": str(layout.root),
        "rows": int(catalog.n_rows),
        "items": int(len(catalog.item_ids)),
        "dim": cfg.dim,
        "fusion": {
            "name": cfg.fusion,
            "variance_kept": None if result.variance_kept is None else round(result.variance_kept, 4),
            **result.info,
        },
        "encoders": {m: f.stats.to_dict() for m, f in features.items()},
        "images": images_report,
        "titles": {"missing": features["text"].stats.missing} if "text" in features else {},
        "alignment": alignment,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "cache_dir": str(cache_root) if cfg.use_cache else None,
        "seed": cfg.seed,
        "options": {
            "encoder": asdict(cfg.encoder),
            "fusion": asdict(cfg.fusion_options),
            "missing": cfg.missing,
        },
        "mmctr_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return report
