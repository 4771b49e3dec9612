"""Run under torchrun by tests/test_distributed.py (not a test module itself):

    torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py DATA OUT MODEL...

For every model: (1) one SGD step through DistributedDataParallel on each rank's half of a fixed
global batch, in eval mode (no dropout, batch norm on its running statistics), against the same
step taken by one process on the whole batch: the weights must agree to float rounding; (2) a real
training run through `train_and_save` with this world, written to OUT/MODEL (rank 0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from mmctr.config import resolve_run_config
from mmctr.data.batches import make_batch
from mmctr.data.reader import load_dataset
from mmctr.training import checkpoint
from mmctr.training.distributed import init_world
from mmctr.training.loop import Checkpointing, loss_fn, prepare_model, train_and_save
from mmctr.training.run_dir import build_model

GLOBAL_BATCH = 256


def one_step_gap(cfg, data, world) -> float:
    """Largest weight difference between a DDP step on halves and a 1-process step on the whole."""
    torch.manual_seed(0)
    single = prepare_model(build_model(cfg, data.items), data["train"])
    torch.manual_seed(0)
    model = prepare_model(build_model(cfg, data.items), data["train"])
    if not any(p.requires_grad for p in model.parameters()):
        return 0.0  # nothing to train (counting baselines)
    rows = torch.arange(GLOBAL_BATCH).numpy()
    half = rows[world.rank :: world.size]
    net = DistributedDataParallel(model, find_unused_parameters=True)
    for m, r, wrap in ((single, rows, single), (model, half, net)):
        m.eval()
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        batch = make_batch(data["train"], r)
        loss = loss_fn(m, wrap(batch).float(), batch, cfg.train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    a, b = single.state_dict(), model.state_dict()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def main() -> None:
    data_root, out = Path(sys.argv[1]), Path(sys.argv[2])
    world = init_world()
    data = load_dataset(data_root, splits=("train", "valid"))
    gaps = {}
    for name in sys.argv[3:]:
        cfg = resolve_run_config(
            name, None, {"train": {"batch_size": GLOBAL_BATCH, "epochs": 2, "seed": 7, "threads": 1}}
        )
        gaps[name] = one_step_gap(cfg, data, world)
        ckpt = Checkpointing(out / f"{name}.partial", every_steps=0)
        if world.main:
            checkpoint.start(
                out / name, {"data": str(data_root), "config": {}, "world_size": world.size}, False
            )
        train_and_save(
            cfg, data, out / name, progress=False, log=lambda *_: None, checkpointing=ckpt, world=world
        )
    if world.main:
        (out / "one_step_gaps.json").write_text(json.dumps(gaps))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
