"""auc_latency.png: valid AUC against p99 request latency, the Pareto front marked and labelled;
the front and label placement that Track 1's and the report's plots share."""

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


def _line(names: list[str]) -> str:
    prefix = "index:" if len(names) > 1 and all(n.startswith("index:") for n in names) else ""
    return prefix + ", ".join(n.removeprefix(prefix) for n in names)


def label_groups(
    usable: list[tuple[dict[str, Any], tuple[float, float]]],
) -> list[tuple[tuple[float, float], str]]:
    """(anchor, text) per label, for ({"name": ...}, (x, y)) points on a log-latency axis. Points
    crowded together (Track 1's index kinds share one query encoder, so they sit at alike latency)
    share one label beside the rightmost of them, a line per score, top to bottom as the points
    are, rows of equal score on one line."""
    pts = [(r["name"], x, y) for r, (x, y) in usable]
    cluster = list(range(len(pts)))  # single link: near points, and points near those, share one
    for i, (_, xi, yi) in enumerate(pts):
        for j, (_, xj, yj) in enumerate(pts[:i]):
            if abs(math.log10(xi) - math.log10(xj)) < 0.05 and abs(yi - yj) < 0.04:
                old, new = cluster[i], cluster[j]
                cluster = [new if c == old else c for c in cluster]
    clusters = [[p for p, c in zip(pts, cluster, strict=True) if c == k] for k in dict.fromkeys(cluster)]
    out = []
    for c in clusters:
        by_score: dict[float, list[str]] = {}
        for name, _, y in c:
            by_score.setdefault(round(y, 3), []).append(name)
        text = "\n".join(_line(names) for _, names in sorted(by_score.items(), reverse=True))
        ys = [y for _, _, y in c]
        out.append(((max(x for _, x, _ in c), (max(ys) + min(ys)) / 2), text))
    return out


def place_labels(
    ax,
    labels: list[tuple[tuple[float, float], str]],
    points: list[tuple[float, float]],
    front: list[tuple[float, float]],
) -> None:
    """Annotate each point beside it, moving a label up or down until its box (estimated: about
    4.5 pt per character and 10 pt per line at font size 8) overlaps no marker and no label placed
    before it, on the right of the point, else on its left; a moved label gets a thin line to its
    point. The front's horizontal steps count as taken. Call once the layout is final (pixel
    positions are used)."""
    pt = ax.figure.dpi / 72  # pixels per point

    def overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    taken = []
    for x, y in points:
        px, py = ax.transData.transform((x, y))
        taken.append((px - 4.5 * pt, py - 4.5 * pt, px + 4.5 * pt, py + 4.5 * pt))
    for (x0, y0), (x1, _) in zip(front, front[1:], strict=False):
        (a, b), (c, _) = ax.transData.transform((x0, y0)), ax.transData.transform((x1, y0))
        taken.append((a, b - pt, c, b + pt))
    left_edge, right_edge = ax.bbox.x0, ax.bbox.x1
    for (x, y), text in labels:
        lines = text.split("\n")
        px, py = ax.transData.transform((x, y))
        w, h = 4.5 * max(map(len, lines)) * pt, 10 * len(lines) * pt
        for dy in (0, 9, -9, 20, -20, 32, -32):
            fits = False
            for dx in (8, -8):
                x0 = px + dx * pt if dx > 0 else px + dx * pt - w
                box = (x0, py + dy * pt - h / 2, x0 + w, py + dy * pt + h / 2)
                fits = (
                    left_edge <= box[0] and box[2] <= right_edge and not any(overlaps(box, t) for t in taken)
                )
                if fits:
                    break
            if fits:
                break
        taken.append(box)
        ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=(dx, dy),
            ha="left" if dx > 0 else "right",
            va="center",
            fontsize=8,
            arrowprops=None if abs(dy) <= 9 else {"arrowstyle": "-", "color": "0.5", "linewidth": 0.6},
        )


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
    if usable:  # labels last: they are placed in pixels, clear of the markers and of each other
        fx = sorted((pts[i] for i in front), key=lambda p: p[0])
        place_labels(
            ax, label_groups([({"name": r["system"]}, p) for r, p in zip(usable, pts, strict=True)]), pts, fx
        )
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out
