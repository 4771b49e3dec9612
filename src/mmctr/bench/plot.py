"""auc_latency.png: valid AUC against p99 request latency, the Pareto front marked and labelled."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def draw_front(ax, points: list[tuple[float, float]], what: str) -> None:
    """The Pareto front as a dashed red step line through its (x, y) points, left to right."""
    fx = sorted(points, key=lambda p: p[0])
    ax.step(
        [p[0] for p in fx],
        [p[1] for p in fx],
        where="post",
        color="tab:red",
        linestyle="--",
        linewidth=1.2,
        label=f"Pareto front ({what})",
        zorder=2,
    )


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower latency x, higher AUC y),
    sorted by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -math.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def plot_auc_latency(records: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [
        r
        for r in records
        if all(math.isfinite(float(r.get(k, math.nan))) for k in ("infer_p99_ms", "valid_auc"))
    ]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if usable:
        pts = [(float(r["infer_p99_ms"]), float(r["valid_auc"])) for r in usable]
        front = set(pareto_front(pts))
        for i, (r, (x, y)) in enumerate(zip(usable, pts, strict=True)):
            ours = r["family"] == "mmctr"
            ax.scatter(
                x,
                y,
                s=70,
                marker="o" if ours else "s",
                color="tab:blue" if ours else "tab:gray",
                edgecolors="tab:red" if i in front else "none",
                linewidths=2,
                zorder=3,
            )
            ax.annotate(r["system"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        draw_front(ax, [pts[i] for i in front], "lower p99, higher AUC")
        # the front's members get a red edge; room around the points keeps labels and legend off them
        ax.scatter(
            [], [], marker="o", color="white", edgecolors="tab:red", linewidths=2, label="on the front"
        )
        ax.margins(x=0.2, y=0.2)
        ax.legend(loc="best", fontsize=8)
        if max(p[0] for p in pts) / max(min(p[0] for p in pts), 1e-9) > 20:
            ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no system with both AUC and latency", ha="center", transform=ax.transAxes)
    ax.set_xlabel("p99 latency of one request, ms (1 thread)")
    ax.set_ylabel("valid AUC")
    ax.set_title("AUC against request latency (circles: mmctr, squares: peers)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out
