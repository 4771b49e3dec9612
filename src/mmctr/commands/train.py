"""`mmctr train`: train a CTR model on a data root and write a run directory.

Checkpoints are kept in `OUT.partial/` while it trains (`mmctr.training.checkpoint`);
`--resume OUT` continues a killed run. `--nproc N` (or torchrun itself) trains data-parallel
(`mmctr.training.distributed`); `--stream` reads the train split in bounded memory
(`mmctr.data.stream`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# what --resume takes from the interrupted run, so they may not be given again
_FROM_CHECKPOINT = ("data", "model", "config", "item_info", "seed", "epochs", "batch_size", "stream")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a CTR model and write a run directory",
        description="Train a CTR model (see `mmctr models`) on the train split of a data root, select "
        "the best epoch on valid AUC, and write a run directory (config, weights, metrics). The "
        "organisers' configuration is the default; --config, --batch-size, --epochs, --seed override it. "
        "While it trains, checkpoints are kept in OUT.partial/; `mmctr train --resume OUT` continues a "
        "run that was killed. `--nproc N`, or `torchrun --nproc-per-node N -m mmctr train ...`, trains "
        "data-parallel on N processes (gloo on CPU, nccl on GPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", type=Path, help="data root (holds MicroLens_1M_x1/); required unless --resume")
    p.add_argument("--model", default=None, help="model name (see `mmctr models`); default din")
    p.add_argument("--config", type=Path, help="YAML overriding the model's defaults (model_params / train)")
    p.add_argument(
        "--item-info", type=Path, help="item_info parquet to use instead of the provided one (Task 1)"
    )
    p.add_argument(
        "--seed", type=int, help="random seed for initialisation and shuffling (overrides the config)"
    )
    p.add_argument("--epochs", type=int, help="maximum epochs (overrides the config)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="training batch size (overrides the config's 8192; small data needs a smaller one); with "
        "several processes it is the global batch, shared among them",
    )
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (fast on AMX CPUs and GPUs)")
    p.add_argument("--out", type=Path, help="run directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier run directory")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="OUT",
        help="continue the interrupted run whose --out was OUT, from its last checkpoint in OUT.partial/",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=1000,
        metavar="STEPS",
        help="write a checkpoint every STEPS optimizer steps, besides the end of every epoch (0: epoch ends only)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="read the train split row group by row group with a bounded shuffle buffer instead of loading it",
    )
    p.add_argument(
        "--stream-buffer", type=int, default=262_144, metavar="ROWS", help="shuffle buffer of --stream"
    )
    p.add_argument("--nproc", type=int, help="train on this many processes (runs torchrun for you)")
    p.add_argument("--nnodes", type=int, default=1, help="with --nproc: machines in the job")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="with --nnodes > 1: the rendezvous address")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def overrides_from_args(args: argparse.Namespace) -> dict:
    train: dict = {}
    for name in ("seed", "epochs", "batch_size"):
        if getattr(args, name, None) is not None:
            train[name] = getattr(args, name)
    if getattr(args, "bf16", False):
        train["bf16"] = True
    return {"train": train} if train else {}


def run(args: argparse.Namespace) -> int:
    from mmctr.errors import ConfigError

    if args.nproc is not None and "WORLD_SIZE" not in os.environ:
        from mmctr.training.distributed import World, argv_without_launch, launch, local_batch_size

        world = World(size=max(args.nproc, 1) * max(args.nnodes, 1))
        if args.resume is None:  # a batch the processes cannot share is refused before they start
            from mmctr.config import resolve_run_config

            cfg = resolve_run_config(args.model or "din", args.config, overrides_from_args(args))
            local_batch_size(cfg.train.batch_size, world)
        else:  # so is a checkpoint that is missing or was written by another number of processes
            from mmctr.training import checkpoint

            checkpoint.read_settings(args.resume, world.size)

        return launch(args.nproc, argv_without_launch(args._argv), args.nnodes, args.rdzv_endpoint)
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if args.checkpoint_every < 0:
        raise ConfigError("--checkpoint-every must be 0 or more")
    if args.resume is not None:
        given = [n for n in _FROM_CHECKPOINT if getattr(args, n, None) not in (None, False)]
        if given or args.out is not None or args.bf16:
            flags = ", ".join(f"--{n.replace('_', '-')}" for n in [*given, *(["out"] if args.out else [])])
            raise ConfigError(
                f"--resume continues the interrupted run with its own settings; drop {flags or '--bf16'}"
            )
        return _resume(args)
    if args.data is None or args.out is None:
        raise ConfigError("--data and --out are required (or --resume OUT to continue a killed run)")
    return _start(args)


def _start(args: argparse.Namespace) -> int:
    from mmctr.config import resolve_run_config, to_dict
    from mmctr.data.reader import data_fingerprint
    from mmctr.outputs import RUN_DIR, check_out
    from mmctr.training.distributed import init_world

    check_out(args.out, RUN_DIR, args.overwrite)  # before minutes of training, not after
    cfg = resolve_run_config(args.model or "din", args.config, overrides_from_args(args))
    world = init_world()
    settings = {
        "data": str(args.data.resolve()),
        "item_info": str(args.item_info.resolve()) if args.item_info else None,
        "config": to_dict(cfg),
        "world_size": world.size,
        "stream": args.stream,
        "stream_buffer": args.stream_buffer,
        "overwrite": args.overwrite,
        "data_fingerprint": data_fingerprint(args.data),
    }
    return _train(args, args.out, cfg, settings, world, resume=None)


def _resume(args: argparse.Namespace) -> int:
    from mmctr.config import RunConfig, from_dict
    from mmctr.data.reader import data_fingerprint
    from mmctr.training import checkpoint
    from mmctr.training.distributed import init_world

    out = args.resume
    world = init_world()
    settings = checkpoint.read_settings(out, world.size)
    where = str(checkpoint.partial_dir(out) / checkpoint.SETTINGS)
    cfg = from_dict(RunConfig, settings["config"], where)
    now = data_fingerprint(settings["data"])
    if settings.get("data_fingerprint") and now != settings["data_fingerprint"]:
        raise checkpoint.CheckpointError(
            f"{settings['data']}: its item_info.parquet changed since the run started; a resumed run "
            "must read the same data. Start a new run instead"
        )
    ckpt = checkpoint.load(checkpoint.partial_dir(out))
    return _train(args, out, cfg, settings, world, resume=ckpt)


def _train(args, out: Path, cfg, settings: dict, world, resume: dict | None) -> int:
    from mmctr.data.reader import load_dataset
    from mmctr.data.stream import StreamedSplit
    from mmctr.training import checkpoint
    from mmctr.training.distributed import barrier, finish
    from mmctr.training.loop import Checkpointing, train_and_save

    stream = bool(settings.get("stream"))
    data = load_dataset(
        settings["data"],
        max_len=cfg.train.max_len,
        splits=("valid",) if stream else ("train", "valid"),
        item_info=settings.get("item_info"),
    )
    rows = None
    if stream:
        rows = StreamedSplit(
            data.layout.split("train"),
            data.items.n_items,
            cfg.train.max_len,
            rank=world.rank,
            world_size=world.size,
            buffer_rows=int(settings.get("stream_buffer") or 262_144),
        )
    ckpt = Checkpointing(checkpoint.partial_dir(out), every_steps=args.checkpoint_every, resume=resume)
    if resume is None and world.main:  # the data loaded: from here on a kill leaves a resumable run
        checkpoint.start(out, settings, bool(settings.get("overwrite")))
    barrier(world)
    try:
        result = train_and_save(
            cfg,
            data,
            out,
            progress=not args.no_progress,
            overwrite=bool(settings.get("overwrite")),
            checkpointing=ckpt,
            train_rows=rows,
            world=world,
        )
    except BaseException:
        if world.main and not (ckpt.dir / checkpoint.STATE).exists():
            checkpoint.finish(ckpt.dir)  # nothing to resume from: leave nothing behind
        raise
    finally:
        finish(world)
    if world.main:
        m = result.metrics
        line = f"valid AUC {m['valid_auc']:.4f}  logloss {m['valid_logloss']:.4f}"
        if "oracle_valid_auc" in m:
            line += f"  (oracle {m['oracle_valid_auc']:.4f})"
        print(f"{line}\nrun written to {out}")
    return 0
