"""`mmctr embed`: Task-1 item embeddings (titles + covers -> fused vectors) as an item_info parquet."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from mmctr.data.schema import EMB_DIM
    from mmctr.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
    from mmctr.fusion import DEFAULT_FUSION

    p = sub.add_parser(
        "embed",
        help="encode item titles and covers, fuse, write an item_info parquet (Task 1)",
        description="Encode item titles and cover images, fuse them to one vector per item and write "
        "an item_info parquet (row index == item_id) plus a JSON report beside it. "
        "`--list` shows the encoders and fusions.",
    )
    p.add_argument(
        "--data", type=Path, help="data root (holds item_feature.parquet, item_images/, MicroLens_1M_x1/)"
    )
    p.add_argument("--out", type=Path, help="item_info parquet to write (the JSON report goes beside it)")
    p.add_argument(
        "--text-encoder",
        default=DEFAULT_TEXT_ENCODER,
        help=f"family[:model] (default {DEFAULT_TEXT_ENCODER})",
    )
    p.add_argument(
        "--image-encoder",
        default=DEFAULT_IMAGE_ENCODER,
        help=f"family[:model] (default {DEFAULT_IMAGE_ENCODER})",
    )
    p.add_argument("--fusion", default=DEFAULT_FUSION, help=f"fusion name (default {DEFAULT_FUSION})")
    p.add_argument("--dim", type=int, default=EMB_DIM, help=f"output dimension (default {EMB_DIM})")
    p.add_argument(
        "--cache-dir", type=Path, help="encoder output cache (default $MMCTR_CACHE or ~/.cache/mmctr)"
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda[:N]")
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="auto: fp16 on CUDA, fp32 on CPU; bf16 autocast is fast on AMX CPUs",
    )
    p.add_argument("--batch-size", type=int, help="items per encoder batch (default per encoder)")
    p.add_argument("--image-size", type=int, help="image encoder input resolution (default: the model's)")
    p.add_argument("--workers", type=int, help="image decoding processes (default min(4, cores - 1))")
    p.add_argument("--text-prefix", help="prefix added to every title, e.g. 'passage: ' for E5")
    p.add_argument("--max-length", type=int, help="title tokens kept")
    p.add_argument(
        "--missing-image",
        default="mean",
        choices=("mean", "zeros"),
        help="vector for items whose cover (or title) is missing or unreadable: the mean of the others, or zeros",
    )
    p.add_argument("--image-weight", type=float, default=0.5, help="clip_sum: weight of the image vector")
    p.add_argument("--coclick-epochs", type=int, default=3, help="coclick: passes over the sampled pairs")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (default 0: the cores not busy with other processes)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the fusions that learn (PCA, coclick)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier item_info parquet"
    )
    p.add_argument(
        "--nproc",
        type=int,
        help="encode on this many processes (runs torchrun for you; each encodes a share of the items "
        "into the cache, then one writes the parquet)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list encoders and fusions, then exit")
    return p


def run(args: argparse.Namespace) -> int:
    from mmctr.encoders import EncoderOptions, list_encoders
    from mmctr.errors import ConfigError
    from mmctr.fusion import FUSIONS, FusionOptions

    if args.list:
        print("encoders (--text-encoder / --image-encoder family[:model]):")
        for name, mods, about in list_encoders():
            print(f"  {name:8s} {mods:11s} {about}")
        print("fusions (--fusion):")
        for name, entry in FUSIONS.items():
            needs = "+".join(entry.needs) or "-"
            print(f"  {name:11s} {needs:11s} {entry.about}")
        return 0
    if args.data is None or args.out is None:
        raise ConfigError("mmctr embed needs --data DATA and --out FILE (or --list)")

    if args.nproc is not None and "WORLD_SIZE" not in os.environ:
        from mmctr.training.distributed import argv_without_launch, launch

        return launch(args.nproc, argv_without_launch(args._argv))

    from mmctr.embed import EmbedConfig, embed, json_path

    cfg = EmbedConfig(
        data=args.data,
        out=args.out,
        text_encoder=args.text_encoder,
        image_encoder=args.image_encoder,
        fusion=args.fusion,
        dim=args.dim,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        encoder=EncoderOptions(
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
            image_size=args.image_size,
            workers=args.workers,
            text_prefix=args.text_prefix,
            max_length=args.max_length,
        ),
        fusion_options=FusionOptions(image_weight=args.image_weight, coclick_epochs=args.coclick_epochs),
        missing=args.missing_image,
        seed=args.seed,
        overwrite=args.overwrite,
        threads=args.threads,
        progress=not args.no_progress,
    )
    report = embed(cfg)
    if report is None:  # a torchrun rank other than 0: its items are in the cache, rank 0 writes
        return 0
    kept = report["fusion"]["variance_kept"]
    kept_s = f", variance kept {kept:.1%}" if kept is not None else ""
    img = report["images"]
    miss = f"; images missing {img['missing']}, unreadable {img['unreadable']}" if img else ""
    print(
        f"{report['rows']:,} rows x {report['dim']} ({args.fusion}{kept_s}) written to {args.out} "
        f"in {report['seconds']['total']:.1f}s{miss}\nreport: {json_path(args.out)}"
    )
    return 0
