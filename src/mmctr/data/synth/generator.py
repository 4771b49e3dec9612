"""`generate`: build the hidden world, draw the split rows and their labels, write every file.

Everything is drawn from one np.random.default_rng(seed) in a fixed order (covers from generators
seeded by (seed, item_id)), so one seed always gives byte-identical files.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.data.schema import SEQ_LEN, Layout
from mmctr.data.synth import world as W
from mmctr.data.synth.config import SCALES, WorldParams
from mmctr.data.synth.images import write_images
from mmctr.data.synth.writer import (
    write_item_feature,
    write_item_info,
    write_item_seq,
    write_split,
    write_truth,
)
from mmctr.errors import MMCTRError
from mmctr.outputs import SYNTH_DATA, check_out, move_into_place, temp_beside

N_STEPS = 8


def _history_stats(length: np.ndarray) -> dict[str, float]:
    return {
        "min": int(length.min()),
        "median": float(np.median(length)),
        "mean": round(float(length.mean()), 3),
        "p99": float(np.percentile(length, 99)),
        "max": int(length.max()),
        "share_at_max_len": round(float((length >= SEQ_LEN).mean()), 6),
    }


def generate(
    out: Path,
    scale: str = "small",
    seed: int = 0,
    images: bool = True,
    overwrite: bool = False,
    params: WorldParams | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a synthetic MMCTR data set with a known click model under `out` and return its
    summary (counts, positive rates, oracle AUCs, seconds); the same summary is in truth/world.json."""
    if scale not in SCALES:
        raise MMCTRError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    out = Path(out)
    size, params = SCALES[scale], params or WorldParams()
    t0 = time.perf_counter()
    step = 0

    def log(msg: str) -> None:
        if progress:
            print(f"synth {msg}  ({time.perf_counter() - t0:.1f}s)", flush=True)

    def begin(what: str) -> None:
        nonlocal step
        step += 1
        log(f"[{step}/{N_STEPS}] {what}")

    check_out(out, SYNTH_DATA, overwrite)
    tmp = temp_beside(out)
    tmp.mkdir()
    try:
        lay = Layout(tmp)
        rng = np.random.default_rng(seed)

        begin(f"items: {size.n_items:,} with topics, styles, titles, tags, popularity, embeddings")
        protos = W.make_prototypes(params, rng)
        items = W.make_items(size, params, protos, rng)
        ids = np.arange(1, items.n + 1)
        pop = np.exp(items.log_pop)
        warm = W.PoolSampler.build(ids[~items.cold[1:]], items.topic, items.style, pop, params.n_styles)
        cold = W.PoolSampler.build(ids[items.cold[1:]], items.topic, items.style, pop, params.n_styles)

        begin(f"covers: {size.n_items:,} JPEGs of {size.image_size}px" if images else "covers: skipped")
        if images:
            # Before the user arrays exist, so forked workers start small.
            write_images(lay.images_dir, items.style, size.image_size, seed, params.n_styles, workers, log)

        begin(f"users: {size.n_users:,} tastes and histories")
        users = W.make_users(size, params, protos, warm, rng)
        hist_keys = users.history_keys(items.n)

        begin("split rows: users and targets")
        rows = {
            "train": W.split_users(size.n_train, users, cover_all=True, rng=rng),
            "valid": W.split_users(size.n_valid, users, cover_all=False, rng=rng),
            "test": W.split_users(size.n_test, users, cover_all=False, rng=rng),
        }
        target = {}
        for name, u in rows.items():
            target[name] = W.draw_targets(users, u, warm, hist_keys, items.n, params, rng)
            if name != "train":  # cold items are only ever valid/test targets
                is_cold = rng.random(len(u)) < params.cold_target_share
                target[name][is_cold] = W.draw_targets(
                    users, u[is_cold], cold, hist_keys, items.n, params, rng
                )
        del hist_keys

        begin("click model: true probabilities and labels")
        window = users.window(params.hist_window)
        parts = {
            name: W.logit_parts(items, users, window, rows[name], target[name], params, rng) for name in rows
        }
        del window
        b0 = W.calibrate_b0(
            np.concatenate([parts[n].logit(params) for n in rows]), params.positive_rate, params.logit_noise
        )
        prob = {name: W.click_probability(parts[name].logit(params, b0), params.logit_noise) for name in rows}
        label = {name: (rng.random(len(prob[name])) < prob[name]).astype(np.float64) for name in rows}

        begin("writing split files")
        for name in rows:
            # As in the real data, the test file's label column is meaningless: all zeros.
            written = label[name] if name != "test" else np.zeros(len(rows[name]))
            write_split(lay.split(name), items, users, rows[name], target[name], written)

        begin("writing item_info, item_feature, item_seq")
        write_item_info(lay.item_info, items)
        write_item_feature(lay.item_feature, items)
        write_item_seq(lay.item_seq, users)

        begin("writing truth/")
        valid_y = label["valid"]
        summary: dict[str, Any] = {
            "scale": scale,
            "seed": seed,
            "counts": {
                "items": items.n,
                "users": users.n,
                "tags": size.n_tags,
                **{f"{n}_rows": len(rows[n]) for n in rows},
                "cold_items": int(items.cold.sum()),
            },
            "positive_rate": {n: round(float(label[n].mean()), 5) for n in rows},
            "mean_click_probability": {n: round(float(prob[n].mean()), 5) for n in rows},
            "oracle_valid_auc": round(W.auc(valid_y, prob["valid"]), 5),
            "oracle_test_auc": round(W.auc(label["test"], prob["test"]), 5),
            # Knows the item (popularity, quality) but nothing about the user.
            "history_free_oracle_valid_auc": round(W.auc(valid_y, parts["valid"].history_free(params)), 5),
            "cold_target_share": {n: round(float(items.cold[target[n]].mean()), 5) for n in rows},
            "history_length": _history_stats(users.hist_len),
            "b0": round(b0, 6),
            "params": asdict(params),
            "scale_config": asdict(size),
            "images": images,
            "user_overlap": "valid/test rows draw users from the same population as train: "
            "every user has at least one train row and one fixed history",
            "cold_item_ids": np.flatnonzero(items.cold).tolist(),
        }
        write_truth(lay.truth_dir, label["test"], prob["valid"], prob["test"], summary)
        move_into_place(tmp, out, SYNTH_DATA, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    summary = {k: v for k, v in summary.items() if k != "cold_item_ids"}
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["out"] = str(out)
    log(
        f"done: {out}  positive rate train {summary['positive_rate']['train']:.3f}, "
        f"oracle valid AUC {summary['oracle_valid_auc']:.4f} "
        f"(history-free {summary['history_free_oracle_valid_auc']:.4f})"
    )
    return summary
