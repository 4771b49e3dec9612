"""Benchmark Task-1 embeddings on this machine; results go to docs/benchmarks/embeddings.json and
the tables of docs/benchmarks/embeddings.md.

Stages (run separately; each updates its own key of the JSON):
  speed   items/s of each encoder setting, through the real pipeline (decode workers, batching),
          no cache, after a warm-up; median of repeats; ratio to a peer measured in the same run
  auc     for each fusion / single modality / baseline: embed synth small, train the baseline DIN
          with the SAME seed, epochs and bf16 autocast, report valid AUC and cold-target AUC
  full    `mmctr embed` on the full-scale synthetic set (91,717 items) from an empty cache: wall
          time and peak RSS
  render  rewrite the tables in the markdown from the JSON

    python scripts/bench_embed.py speed --data DATA
    python scripts/bench_embed.py auc --data DATA --epochs 3
    python scripts/bench_embed.py full --data DATA_FULL --image-size 64 --precision bf16
    python scripts/bench_embed.py render
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
JSON_OUT = REPO / "docs" / "benchmarks" / "embeddings.json"
MD_OUT = REPO / "docs" / "benchmarks" / "embeddings.md"
WORK = Path(os.environ.get("BENCH_EMBED_WORK", "/tmp/bench_embed"))

# AUC rows: name -> embed settings. The first block compares fusions with the default encoders
# (minilm + effnet at its native 224 px, fp32); the second prices the speed-ups used at full scale.
AUC_ROWS: dict[str, dict[str, Any]] = {
    "concat_pca": {"fusion": "concat_pca"},
    "pca_concat": {"fusion": "pca_concat"},
    "coclick": {"fusion": "coclick"},
    "text only": {"fusion": "text"},
    "image only": {"fusion": "image"},
    "random": {"fusion": "random"},
    "provided": {"fusion": "provided"},
    "concat_pca, bf16 encoders": {"fusion": "concat_pca", "precision": "bf16"},
    "concat_pca, images at 64 px": {"fusion": "concat_pca", "image_size": 64},
    "concat_pca, 64 px + bf16": {"fusion": "concat_pca", "image_size": 64, "precision": "bf16"},
}

# Encoder throughput rows: (label, modality, spec, options, items, torch threads). The first row of
# each modality is the peer the others are compared with. The 2-thread rows show what OpenMP does
# on this shared 2-core machine when another process holds a core.
SPEED_ROWS: list[tuple[str, str, str, dict[str, Any], int, int]] = [
    ("minilm fp32", "text", "minilm", {}, 2048, 1),
    ("minilm bf16", "text", "minilm", {"precision": "bf16"}, 4096, 1),
    ("minilm bf16, 2 threads", "text", "minilm", {"precision": "bf16"}, 1024, 2),
    ("hf mean-pool (MiniLM weights) fp32", "text", "hf:{minilm}", {}, 2048, 1),
    ("hf mean-pool (MiniLM weights) bf16", "text", "hf:{minilm}", {"precision": "bf16"}, 4096, 1),
    ("effnet-lite0 224px fp32", "image", "effnet", {}, 256, 1),
    ("effnet-lite0 224px bf16", "image", "effnet", {"precision": "bf16"}, 512, 1),
    ("effnet-lite0 128px fp32", "image", "effnet", {"image_size": 128}, 512, 1),
    ("effnet-lite0 128px bf16", "image", "effnet", {"image_size": 128, "precision": "bf16"}, 1024, 1),
    ("effnet-lite0 64px fp32", "image", "effnet", {"image_size": 64}, 2048, 1),
    ("effnet-lite0 64px bf16", "image", "effnet", {"image_size": 64, "precision": "bf16"}, 4096, 1),
    ("effnet-lite0 64px bf16, 2 threads", "image", "effnet", {"image_size": 64, "precision": "bf16"}, 512, 2),
    ("clip ViT-B/32 arch (random weights) bf16", "image", "clip:{clip_b32}", {"precision": "bf16"}, 256, 1),
    ("clip ViT-L/14 arch (random weights) bf16", "image", "clip:{clip_l14}", {"precision": "bf16"}, 32, 1),
]


def machine() -> dict[str, Any]:
    import torch

    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    flags = Path("/proc/cpuinfo").read_text()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "amx_bf16": "amx_bf16" in flags,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0],
    }


def update_json(key: str, value: Any) -> None:
    data = json.loads(JSON_OUT.read_text()) if JSON_OUT.exists() else {}
    data[key] = value
    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(data, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# speed


def _random_clip(dst: Path, kind: str) -> Path:
    """A CLIP checkpoint with real architecture sizes and random weights (speed only: no hub here)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    if (dst / "config.json").exists():
        return dst
    vision = (
        dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            patch_size=32,
        )
        if kind == "b32"
        else dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            patch_size=14,
        )
    )
    cfg = CLIPConfig(
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=1, num_attention_heads=8),
        vision_config=dict(image_size=224, **vision),
        projection_dim=512 if kind == "b32" else 768,
    )
    CLIPModel(cfg).save_pretrained(dst)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
        dst
    )
    return dst


def stage_speed(args: argparse.Namespace) -> None:
    import torch

    from mmctr.data.schema import Layout
    from mmctr.embed import read_catalog
    from mmctr.encoders import EncoderOptions, build_encoder
    from mmctr.encoders.image import list_images
    from mmctr.encoders.runner import encode_images, encode_titles
    from mmctr.encoders.text import bundled_minilm_path

    torch.manual_seed(0)
    load0 = os.getloadavg()[0]
    layout = Layout(args.data)
    catalog = read_catalog(layout)
    listing = list_images(layout.images_dir)

    def name(key: str) -> str:  # random CLIP checkpoints are built only when their row runs
        if key == "minilm":
            return bundled_minilm_path()
        return str(_random_clip(WORK / f"clip-{key[5:]}-random", key[5:]))

    rows = []
    peers: dict[str, float] = {}
    for label, modality, spec, opts, n, threads in SPEED_ROWS:
        if args.only and not re.search(args.only, label):
            continue
        key = re.search(r"\{(\w+)\}", spec)
        enc = build_encoder(
            spec.format(**({key.group(1): name(key.group(1))} if key else {})),
            modality,
            EncoderOptions(**opts),
        )
        ids = catalog.item_ids[:n]
        torch.set_num_threads(threads)
        enc.load()

        def once(ids: np.ndarray = ids, enc=enc, modality: str = modality) -> float:
            if modality == "text":
                s = encode_titles(enc, catalog.titles, ids, catalog.n_rows, None, False).stats
            else:
                s = encode_images(enc, listing, ids, catalog.n_rows, None, False, workers=args.workers).stats
            return s.items_per_s

        once(ids[: min(len(ids), 2 * enc.batch_size)])  # warm-up: kernels chosen, workers started
        rates = [once() for _ in range(args.repeats)]
        rate = statistics.median(rates)
        peers.setdefault(modality, rate)
        row = {
            "encoder": label,
            "modality": modality,
            "spec": spec,
            "options": opts,
            "items": int(len(ids)),
            "items_per_s": round(rate, 1),
            "items_per_s_all": [round(r, 1) for r in rates],
            "ratio_to_peer": round(rate / peers[modality], 2),
            "batch_size": enc.batch_size,
            "threads": threads,
            "load_average_after": os.getloadavg()[0],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        del enc
    update_json(
        "speed",
        {
            "machine": {
                **machine(),
                "load_average_at_start": load0,
                "load_average_at_end": os.getloadavg()[0],
            },
            "data": str(args.data),
            "repeats": args.repeats,
            "rows": rows,
        },
    )


# ----------------------------------------------------------------------------------------------
# auc


def _cold_auc(data, model, metrics: dict[str, Any]) -> float | None:
    """metrics['cold_valid_auc'] when training reported it; else computed from world.json."""
    if "cold_valid_auc" in metrics:
        return metrics["cold_valid_auc"]
    world = data.layout.truth_dir / "world.json"
    if not world.exists():
        return None
    from mmctr.training.loop import predict_split
    from mmctr.training.metrics import auc

    cold = np.asarray(json.loads(world.read_text()).get("cold_item_ids", []), dtype=np.int64)
    valid = data["valid"]
    is_cold = np.isin(valid.item_id, cold)
    if not is_cold.any() or valid.label[is_cold].min() == valid.label[is_cold].max():
        return None
    p = predict_split(model, valid, bf16=True)
    return auc(valid.label[is_cold], p[is_cold])


def stage_auc(args: argparse.Namespace) -> None:
    from mmctr.config import resolve_run_config
    from mmctr.data.reader import load_dataset
    from mmctr.embed import EmbedConfig, embed
    from mmctr.encoders import EncoderOptions
    from mmctr.training.loop import train

    existing = json.loads(JSON_OUT.read_text()).get("auc", {}) if JSON_OUT.exists() else {}
    results = {r["row"]: r for r in existing.get("rows", [])} if args.keep else {}
    seeds = [int(s) for s in args.seeds.split(",")]
    for name, setting in AUC_ROWS.items():
        if args.only and not re.search(args.only, name):
            continue
        opts = {k: v for k, v in setting.items() if k in ("precision", "image_size")}
        out = WORK / "small" / f"{re.sub(r'[^a-z0-9]+', '_', name)}.parquet"
        t0 = time.perf_counter()
        report = embed(
            EmbedConfig(
                data=args.data,
                out=out,
                fusion=setting["fusion"],
                encoder=EncoderOptions(**opts),
                cache_dir=WORK / "cache",
                progress=False,
                seed=0,
                threads=args.threads,
            )
        )
        embed_s = time.perf_counter() - t0
        # --keep: results of other seeds already in the JSON count towards the mean
        per_seed = [r for r in results.get(name, {}).get("per_seed", []) if r["seed"] not in seeds]
        for seed in seeds:
            train_cfg = {"bf16": True, "epochs": args.epochs, "seed": seed, "threads": args.threads}
            cfg = resolve_run_config("din", None, {"train": train_cfg})
            data = load_dataset(
                args.data, max_len=cfg.train.max_len, splits=("train", "valid"), item_info=out
            )
            res = train(cfg, data, progress=False, log=lambda m: print("   ", m, flush=True))
            per_seed.append(
                {
                    "seed": seed,
                    "valid_auc": res.metrics["valid_auc"],
                    "cold_valid_auc": _cold_auc(data, res.model, res.metrics),
                    "oracle_valid_auc": res.metrics.get("oracle_valid_auc"),
                    "oracle_cold_valid_auc": res.metrics.get("oracle_cold_valid_auc"),
                    "cold_valid_rows": res.metrics.get("cold_valid_rows"),
                    "best_epoch": res.metrics["best_epoch"],
                    "train_seconds": round(res.metrics["train_seconds"], 1),
                }
            )

        def mean(key: str, rows: list[dict[str, Any]] = per_seed) -> float | None:
            vals = [r[key] for r in rows if r[key] is not None]
            return round(float(np.mean(vals)), 4) if vals else None

        per_seed.sort(key=lambda r: r["seed"])
        row = {
            "row": name,
            "setting": setting,
            "seeds": [r["seed"] for r in per_seed],
            "valid_auc": mean("valid_auc"),
            "cold_valid_auc": mean("cold_valid_auc"),
            "oracle_valid_auc": mean("oracle_valid_auc"),
            "oracle_cold_valid_auc": mean("oracle_cold_valid_auc"),
            "variance_kept": report["fusion"]["variance_kept"],
            "embed_seconds": round(embed_s, 1),
            "per_seed": per_seed,
            "fusion_info": {k: v for k, v in report["fusion"].items() if k not in ("name", "variance_kept")},
        }
        results[name] = row
        print(
            json.dumps({k: row[k] for k in ("row", "valid_auc", "cold_valid_auc", "variance_kept")}),
            flush=True,
        )
        order = [r for r in AUC_ROWS if r in results]
        update_json(
            "auc",
            {
                "machine": machine(),
                "data": str(args.data),
                "epochs": args.epochs,
                "seeds": sorted({r["seed"] for row in results.values() for r in row["per_seed"]}),
                "din": "baseline config (src/mmctr/configs/din.yaml), bf16 autocast, same seeds and epochs every row",
                "threads": args.threads,
                "rows": [results[r] for r in order],
            },
        )


# ----------------------------------------------------------------------------------------------
# full


def stage_full(args: argparse.Namespace) -> None:
    import shutil

    cache = WORK / "full-cache"
    shutil.rmtree(cache, ignore_errors=True)  # end to end: nothing cached
    out = WORK / "full" / "item_info.parquet"
    cmd = [
        sys.executable,
        "-m",
        "mmctr.cli",
        "embed",
        "--data",
        str(args.data),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--fusion",
        args.fusion,
        "--no-progress",
    ]
    if args.image_size:
        cmd += ["--image-size", str(args.image_size)]
    if args.precision:
        cmd += ["--precision", args.precision]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode != 0:
        raise SystemExit(f"mmctr embed failed ({proc.returncode})")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    report = json.loads(out.with_suffix(".json").read_text())
    update_json(
        "full",
        {
            "machine": {
                **machine(),
                "load_average_at_start": load0,
                "load_average_at_end": os.getloadavg()[0],
            },
            "command": " ".join(["mmctr", *cmd[3:]]),
            "items": report["items"],
            "wall_seconds": round(wall, 1),
            "peak_rss_mib": round(rss_kb / 1024, 1),
            "stage_seconds": report["seconds"],
            "encoders": {
                m: {k: s[k] for k in ("encoder", "precision", "preprocessing", "items_per_s", "encoded")}
                for m, s in report["encoders"].items()
            },
            "variance_kept": report["fusion"]["variance_kept"],
            "images_missing": report["images"]["missing"],
        },
    )
    print(f"full: {report['items']:,} items in {wall:.1f}s, peak RSS {rss_kb / 1024:.0f} MiB")


# ----------------------------------------------------------------------------------------------
# render


def _f(v: Any, nd: int = 4) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def _per_seed(r: dict[str, Any], key: str) -> str:
    vals = [p[key] for p in r["per_seed"] if p.get(key) is not None]
    if not vals:
        return "–"
    mean = _f(float(np.mean(vals)))
    return mean if len(vals) == 1 else f"{mean} ({' / '.join(_f(v) for v in vals)})"


def render() -> str:
    data = json.loads(JSON_OUT.read_text())
    lines: list[str] = []
    if "auc" in data:
        a = data["auc"]
        base = next((r for r in a["rows"] if r["row"] == "concat_pca"), None)
        lines += [
            f"### Baseline DIN valid AUC per embedding (synth small, {a['epochs']} epochs, seeds {a['seeds']})",
            "",
            "Mean over seeds (per seed in brackets). Cold-target AUC is over the valid rows whose target "
            "item never appears in train or any history.",
            "",
            "| embedding | valid AUC | Δ vs concat_pca | cold-target AUC | variance kept |",
            "|---|---|---|---|---|",
        ]
        for r in a["rows"]:
            kept = r["variance_kept"]
            delta = "" if base is None or r is base else f"{r['valid_auc'] - base['valid_auc']:+.4f}"
            lines.append(
                f"| {r['row']} | {_per_seed(r, 'valid_auc')} | {delta} | {_per_seed(r, 'cold_valid_auc')} | "
                f"{'–' if kept is None else f'{kept:.1%}'} |"
            )
        oracle = next((r for r in a["rows"] if r.get("oracle_valid_auc")), None)
        if oracle:
            lines += [
                "",
                f"Oracle (the generator's true click probability): valid AUC {_f(oracle['oracle_valid_auc'])}, "
                f"cold-target AUC {_f(oracle['oracle_cold_valid_auc'])}.",
            ]
        lines.append("")
    if "speed" in data:
        s = data["speed"]
        m = s["machine"]
        lines += [
            "### Encoder throughput on this machine",
            "",
            f"{m['cpu']}, {m['cores']} cores shared with other jobs (load average {m['load_average_at_start']:.1f} "
            f"at start, {m.get('load_average_at_end', float('nan')):.1f} at end), torch {m['torch']}. Median of "
            f"{s['repeats']} runs after a warm-up, through the pipeline (decode worker, batching), no cache; "
            f"titles and 64 px covers of `{s['data']}`.",
            "",
            "| encoder | threads | items | items/s | vs first row of its modality | load average after |",
            "|---|---|---|---|---|---|",
        ]
        for r in s["rows"]:
            lines.append(
                f"| {r['encoder']} | {r.get('threads', '')} | {r['items']} | {r['items_per_s']:.1f} | "
                f"{r['ratio_to_peer']:.2f}x | {r.get('load_average_after', float('nan')):.1f} |"
            )
        lines.append("")
    if "full" in data:
        f = data["full"]
        enc = ", ".join(
            f"{m}: {e['encoder']} {e['precision']} {e['items_per_s']:.0f} items/s"
            for m, e in f["encoders"].items()
        )
        lines += [
            "### Full scale (91,717 items), end to end from an empty cache",
            "",
            f"`{f['command']}`",
            "",
            f"- wall time **{f['wall_seconds']:.0f} s ({f['wall_seconds'] / 60:.1f} min)**, peak RSS "
            f"{f['peak_rss_mib']:.0f} MiB; load average {f['machine']['load_average_at_start']:.1f} at start, "
            f"{f['machine']['load_average_at_end']:.1f} at end",
            f"- stages (s): {', '.join(f'{k} {v:.0f}' for k, v in f['stage_seconds'].items())}",
            f"- encoders: {enc}; variance kept {f['variance_kept']:.1%}; images missing {f['images_missing']}",
            "",
        ]
    return "\n".join(lines)


def stage_render(args: argparse.Namespace) -> None:
    text = MD_OUT.read_text() if MD_OUT.exists() else "<!-- tables:begin -->\n<!-- tables:end -->\n"
    begin, end = "<!-- tables:begin -->", "<!-- tables:end -->"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    MD_OUT.write_text(f"{head}{begin}\n{render()}\n{end}{tail}")
    print(f"tables written to {MD_OUT}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=("speed", "auc", "full", "render"))
    p.add_argument(
        "--data", type=Path, required=True, help="data root (mmctr generate or a converted dataset)"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", default="2025")
    p.add_argument("--only", help="regex: run only the matching rows")
    p.add_argument("--keep", action="store_true", help="auc: keep rows already in the JSON")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int)
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: default; 1 wins on a busy machine)"
    )
    p.add_argument("--fusion", default="concat_pca")
    p.add_argument("--image-size", type=int)
    p.add_argument("--precision")
    args = p.parse_args()
    {"speed": stage_speed, "auc": stage_auc, "full": stage_full, "render": stage_render}[args.stage](args)


if __name__ == "__main__":
    from mmctr.errors import script_exit

    script_exit(main)
