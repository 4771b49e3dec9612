"""The report's figures, drawn with matplotlib and returned as PNG bytes (inlined by html.py).

Every axis says what it measures and in which unit; every figure with more than one series has a
legend. The efficiency plots reuse the bench's Pareto front (`mmctr.bench.plot`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmctr.bench.plot import draw_front, label_groups, pareto_front, place_labels
from mmctr.report.collect import Track1Result, Track1Row, Track1Run, Track2Run, finite

DPI = 100
FONT = 10


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": FONT,
            "axes.titlesize": FONT + 1,
            "axes.labelsize": FONT,
            "legend.fontsize": FONT - 1,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _colours(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# ----------------------------------------------------------------------------------------------
# learning curves


def learning_curves(runs: list[Track2Run]) -> bytes | None:
    """Train loss, valid AUC and valid logloss by epoch, one colour per run; a dotted vertical
    line where a run's learning rate was reduced, a star at the epoch it kept."""
    runs = [r for r in runs if r.history]
    if not runs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    panels = (
        ("loss", "train loss (BCE, running mean at epoch end)"),
        ("valid_auc", "valid AUC"),
        ("valid_logloss", "valid logloss (BCE, nats)"),
    )
    lr_drawn = False
    for run, colour in zip(runs, _colours(len(runs)), strict=True):
        h = run.history
        epochs = [e.get("epoch", i + 1) for i, e in enumerate(h)]
        for ax, (key, _) in zip(axes, panels, strict=True):
            ys = [e.get(key) for e in h]
            ax.plot(
                epochs, [y if finite(y) else np.nan for y in ys], "o-", color=colour, ms=4, label=run.name
            )
        # history[i]["lr"] is the rate epoch i ran at: a lower one than the epoch before is a step.
        for prev, cur, ep in zip(h, h[1:], epochs[1:], strict=False):
            if finite(prev.get("lr")) and finite(cur.get("lr")) and cur["lr"] < prev["lr"]:
                for ax in axes:
                    ax.axvline(ep - 0.5, color=colour, linestyle=":", linewidth=1.5)
                axes[1].annotate(
                    f"lr {cur['lr']:.0e}",
                    (ep - 0.5, 0.03),
                    xycoords=("data", "axes fraction"),
                    xytext=(-3, 0),
                    textcoords="offset points",
                    rotation=90,
                    ha="right",
                    va="bottom",
                    fontsize=FONT - 2,
                    color=colour,
                )
                lr_drawn = True
        best = run.metrics.get("best_epoch")
        for e, ep in zip(h, epochs, strict=True):
            if ep == best and finite(e.get("valid_auc")):
                axes[1].plot(ep, e["valid_auc"], "*", color=colour, ms=13, mec="black", mew=0.6)
    oracles = sorted(
        {round(r.metrics["oracle_valid_auc"], 4) for r in runs if finite(r.metrics.get("oracle_valid_auc"))}
    )
    for o in oracles:
        axes[1].axhline(o, color="black", linestyle="--", linewidth=1)
        axes[1].annotate(
            f"oracle {o:.4f}",
            (0.01, o),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=FONT - 2,
        )
    for ax, (_, label) in zip(axes, panels, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_title("train loss")
    axes[1].set_title("valid AUC (★ epoch kept)")
    axes[2].set_title("valid logloss")
    handles, labels = axes[0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    if lr_drawn:
        handles.append(Line2D([], [], color="gray", linestyle=":", linewidth=1.5))
        labels.append("learning rate reduced")
    if oracles:
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1))
        labels.append("oracle AUC (true click probability)")
    handles.append(Line2D([], [], marker="*", color="gray", linestyle="", ms=11, mec="black"))
    labels.append("best epoch (weights kept)")
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False)
    fig.tight_layout(rect=(0, 0.1 + 0.04 * (len(labels) // 6), 1, 1))
    return _png(fig)


def track1_learning_curves(runs: list[Track1Run]) -> bytes | None:
    """Loss and held-out Track 1 score by epoch of `mmctr retrieval train` runs."""
    runs = [r for r in runs if r.metrics.get("history")]
    if not runs:
        return None
    plt = _plt()
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4))
    for run, colour in zip(runs, _colours(len(runs)), strict=True):
        h = run.metrics["history"]
        ep = [e.get("epoch", i) for i, e in enumerate(h)]
        a0.plot(
            ep,
            [e["loss"] if finite(e.get("loss")) else np.nan for e in h],
            "o-",
            color=colour,
            ms=4,
            label=run.name,
        )
        for task, style in (("overall", "o-"), ("mmdocir", "s--"), ("m2kr", "^:")):
            ys = [(e.get("held_out") or {}).get(task) for e in h]
            a1.plot(
                ep,
                [y if finite(y) else np.nan for y in ys],
                style,
                color=colour,
                ms=4,
                label=f"{run.name}: {task}",
            )
    a0.set(xlabel="epoch", ylabel="train loss (InfoNCE, mean over batches)", title="train loss")
    a1.set(
        xlabel="epoch (0 = untrained)", ylabel="held-out score (mean R@k, fraction)", title="held-out score"
    )
    a0.legend()
    a1.legend()
    fig.tight_layout()
    return _png(fig)


# ----------------------------------------------------------------------------------------------
# efficiency against effectiveness


@dataclass
class Point:
    label: str
    group: str  # legend group: "mmctr (bench)", "peer (bench)", "mmctr run", "retriever", ...
    y: float
    latency_ms: float | None
    cost: float | None


GROUP_STYLE = {  # group -> (marker, colour)
    "mmctr (bench)": ("o", "tab:blue"),
    "peer (bench)": ("s", "tab:gray"),
    "mmctr run": ("D", "tab:orange"),
    "retriever": ("o", "tab:blue"),
    "index option": ("s", "tab:green"),
    "trained retriever": ("D", "tab:orange"),
}


def _usable(points: list[Point], x_of) -> list[tuple[Point, tuple[float, float]]]:
    return [
        (p, (float(x_of(p)), float(p.y))) for p in points if finite(x_of(p)) and x_of(p) > 0 and finite(p.y)
    ]


def _panel(
    ax, usable: list[tuple[Point, tuple[float, float]]], xlabel: str, ylabel: str
) -> list[tuple[float, float]]:
    """Scatter the points by group, red-edge and step-line the Pareto front; returns the front."""
    xy = [q for _, q in usable]
    front = pareto_front(xy)
    for group in dict.fromkeys(p.group for p, _ in usable):
        marker, colour = GROUP_STYLE.get(group, ("o", "tab:purple"))
        pts = [(x, y, i) for i, (p, (x, y)) in enumerate(usable) if p.group == group]
        ax.scatter(
            [x for x, _, _ in pts],
            [y for _, y, _ in pts],
            marker=marker,
            s=55,
            color=colour,
            edgecolors=["tab:red" if i in front else "none" for _, _, i in pts],
            linewidths=1.8,
            label=group,
            zorder=3,
        )
    fx = sorted((xy[i] for i in front), key=lambda q: q[0])
    if len(fx) > 1:
        draw_front(ax, fx, "red edge: on it")
    xs = [x for x, _ in xy]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if max(xs) / min(xs) > 20:
        ax.set_xscale("log")
        ax.set_xlabel(xlabel + " (log scale)")
    ax.margins(x=0.3, y=0.15)
    ax.legend(loc="best")
    return fx


def _wrap(text: str, width: int = 28) -> str:
    """A label of several names (points that sit together) one name a line when it is long."""
    return "\n".join(
        part for line in text.split("\n") for part in (line.split(", ") if len(line) > width else [line])
    )


def frontier(
    points: list[Point], title: str, ylabel: str, latency_label: str, cost_label: str
) -> bytes | None:
    """The score against request latency and against the cost to train (a panel for each that
    was measured), the Pareto front (lower x, higher y) drawn in each, every point named."""

    panels = [
        (usable, label, what)
        for usable, label, what in (
            (_usable(points, lambda p: p.latency_ms), latency_label, "against request latency"),
            (_usable(points, lambda p: p.cost), cost_label, "against training cost"),
        )
        if usable
    ]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.6 * len(panels) + 1.5, 4.8), squeeze=False)
    fronts = []
    for ax, (usable, label, what) in zip(axes[0], panels, strict=True):
        fronts.append(_panel(ax, usable, label, ylabel))
        ax.set_title(what)
    fig.suptitle(title)
    fig.tight_layout()
    for ax, (usable, _, _), fx in zip(axes[0], panels, fronts, strict=True):
        named = [({"name": p.label}, q) for p, q in usable]
        labels = [(anchor, _wrap(text)) for anchor, text in label_groups(named)]
        place_labels(ax, labels, [q for _, q in usable], fx)
    return _png(fig)


# ----------------------------------------------------------------------------------------------
# embedding map


@dataclass
class MapPlot:
    png: bytes
    width: int  # pixels of the PNG
    height: int
    xy_px: list[tuple[float, float]]  # each plotted point, in PNG pixels from the top left
    method: str


def project_2d(emb: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates: UMAP when the umap package is installed, else PCA (numpy SVD)."""
    try:
        import umap  # type: ignore[import-not-found]

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(emb), "UMAP"
    except ImportError:
        pass
    x = emb - emb.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s**2 / max((s**2).sum(), 1e-12)
    return x @ vt[:2].T, f"PCA ({100 * var[0]:.0f}% + {100 * var[1]:.0f}% of variance)"


def tag_colours(tags: np.ndarray, top: int = 10) -> tuple[list[str], list[str]]:
    """A label per item: its first tag among the `top` most frequent ones, else "other tags"."""
    flat = tags[tags > 0]
    ids, counts = np.unique(flat, return_counts=True)
    common = [int(t) for t in ids[np.argsort(-counts, kind="stable")][:top]]
    labels = []
    for row in tags:
        hit = next((int(t) for t in row if int(t) in common), None)
        labels.append(f"tag {hit}" if hit is not None else "other tags")
    order = [f"tag {t}" for t in common] + ["other tags"]
    return labels, order


def embedding_map(emb: np.ndarray, labels: list[str], order: list[str], title: str, seed: int = 0) -> MapPlot:
    xy, method = project_2d(emb, seed)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 6.5))
    colours = dict(zip(order, _colours(len(order)), strict=True))
    colours["other tags"] = (0.75, 0.75, 0.75, 1.0)
    lab = np.asarray(labels)
    for name in reversed(order):  # "other" first, underneath
        m = lab == name
        if m.any():
            ax.scatter(
                xy[m, 0],
                xy[m, 1],
                s=12,
                color=colours[name],
                label=f"{name} ({int(m.sum())})",
                alpha=0.85,
                linewidths=0,
            )
    axis = "UMAP" if method.startswith("UMAP") else "PC"
    ax.set_xlabel(f"{axis} 1 (unitless projection of item_emb_d128)")
    ax.set_ylabel(f"{axis} 2 (unitless)")
    ax.set_title(f"{title}: {len(xy):,} items, {method}")
    handles, names = ax.get_legend_handles_labels()
    ax.legend(
        handles[::-1],
        names[::-1],
        title="colour: first common tag",
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
    )
    fig.tight_layout()
    fig.canvas.draw()
    w, h = fig.canvas.get_width_height()
    px = ax.transData.transform(xy)
    scale = DPI / fig.dpi
    pts = [(float(x * scale), float((h - y) * scale)) for x, y in px]
    png = _png(fig)
    return MapPlot(png, int(w * scale), int(h * scale), pts, method)


# ----------------------------------------------------------------------------------------------
# Track 1


TASK_LABEL = {"mmdocir": "MMDocIR pages (fractional recall)", "m2kr": "M2KR passages (hit rate)"}
KS = (1, 3, 5, 10)


def _recall(m: dict[str, Any] | None) -> list[float]:
    return [float(m.get(f"R@{k}", np.nan)) if m else np.nan for k in KS]


def recall_curves(results: list[Track1Result], max_lines: int = 14) -> bytes | None:
    """R@k against k for every retriever, one panel per task; index options dashed."""
    rows: list[tuple[str, Track1Row]] = []
    for r in results:
        for row in r.rows:
            label = row.name if len(results) == 1 else f"{r.name}: {row.name}"
            rows.append((label, row))
    rows = [(lab, row) for lab, row in rows if any(row.scores.get(t) for t in TASK_LABEL)]
    if not rows:
        return None
    rows.sort(
        key=lambda lr: -(lr[1].summary.get("overall") or 0) if finite(lr[1].summary.get("overall")) else 0
    )
    rows = rows[:max_lines]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for (label, row), colour in zip(rows, _colours(len(rows)), strict=True):
        style = "--" if row.kind == "index" else "-"
        for ax, task in zip(axes, TASK_LABEL, strict=True):
            ax.plot(KS, _recall(row.scores.get(task)), style, marker="o", ms=4, color=colour, label=label)
    for ax, task in zip(axes, TASK_LABEL, strict=True):
        ax.set_title(TASK_LABEL[task])
        ax.set_xlabel("k (ids listed per question)")
        ax.set_xticks(KS)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("recall@k (fraction of questions)")
    axes[1].legend(
        loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="retriever (dashed: index option)"
    )
    fig.tight_layout()
    return _png(fig)


def recall_by_kind(row: Track1Row, title: str) -> bytes | None:
    """R@k against k per question kind (text / table / chart / figure; image / image_question /
    wit) for one retriever."""
    tasks = [t for t in TASK_LABEL if (row.scores.get(t) or {}).get("by_kind")]
    if not tasks:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.2), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks, strict=True):
        kinds = row.scores[task]["by_kind"]
        for (kind, m), colour in zip(kinds.items(), _colours(len(kinds)), strict=True):
            ax.plot(KS, _recall(m), "o-", ms=4, color=colour, label=f"{kind} ({m.get('questions', '?')} q)")
        ax.plot(KS, _recall(row.scores[task]), "k--", lw=1.5, label="all questions")
        ax.set_title(TASK_LABEL[task])
        ax.set_xlabel("k (ids listed per question)")
        ax.set_xticks(KS)
        ax.set_ylim(0, 1.02)
        ax.legend(title="query kind", loc="lower right")
    axes[0][0].set_ylabel("recall@k (fraction of questions)")
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)
