"""retrieval_pareto.png: Track 1's overall score against query p50 latency, one labelled point per
retriever and index option, the Pareto front drawn as a step line (Track 2's plot is plot.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmctr.bench.plot import draw_front, pareto_front

# A log axis cannot show 0 ms: a row faster than this (the random floor) is drawn at it.
LATENCY_FLOOR_MS = 1e-3

STYLE = {  # row kind -> (marker, colour, legend label)
    "retriever": ("o", "tab:blue", "retriever"),
    "index": ("s", "tab:green", "index option (MiniLM + FAISS kind)"),
}


def _point(row: dict[str, Any]) -> tuple[float, float] | None:
    """(query p50 ms, overall score) of a row's summary, or None when either is missing."""
    s = row.get("summary", {})
    x, y = s.get("query_ms_p50"), s.get("overall")
    if x is None or y is None or not (math.isfinite(float(x)) and math.isfinite(float(y))):
        return None
    return max(float(x), LATENCY_FLOOR_MS), float(y)


def _line(names: list[str]) -> str:
    prefix = "index:" if len(names) > 1 and all(n.startswith("index:") for n in names) else ""
    return prefix + ", ".join(n.removeprefix(prefix) for n in names)


def _label_groups(
    usable: list[tuple[dict[str, Any], tuple[float, float]]],
) -> list[tuple[tuple[float, float], str]]:
    """(anchor, text) per label. Points crowded together (the index kinds share one query encoder,
    so they sit at alike latency) share one label beside the rightmost of them, a line per score,
    top to bottom as the points are, rows of equal score on one line."""
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


def _place_labels(
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


def front_names(rows: list[dict[str, Any]]) -> list[str]:
    """Names of the rows no other row beats on both query p50 (lower) and overall score (higher),
    fastest first."""
    usable = [(r["name"], p) for r in rows if (p := _point(r)) is not None]
    return [usable[i][0] for i in pareto_front([p for _, p in usable])]


def plot_score_latency(
    rows: list[dict[str, Any]], out: Path, title: str = "", threads: int | None = None
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [(r, p) for r in rows if (p := _point(r)) is not None]
    front = set(front_names(rows))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    if usable:
        kinds = []
        for r, (x, y) in usable:
            kind = r.get("kind") if r.get("kind") in STYLE else "retriever"
            kinds.append(kind)
            marker, colour, _ = STYLE[kind]
            ax.scatter(
                x,
                y,
                s=70,
                marker=marker,
                color=colour,
                edgecolors="tab:red" if r["name"] in front else "none",
                linewidths=2,
                zorder=3,
            )
        draw_front(ax, [p for r, p in usable if r["name"] in front], "lower latency, higher score")
        # legend entries as empty proxies: a data point would carry its front edge into the legend
        for kind in dict.fromkeys(kinds):
            marker, colour, label = STYLE[kind]
            ax.scatter([], [], marker=marker, color=colour, label=label)
        ax.scatter(
            [], [], marker="o", color="white", edgecolors="tab:red", linewidths=2, label="on the front"
        )
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.15)
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no row with both a score and a latency", ha="center", transform=ax.transAxes)
    on = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    ax.set_xlabel(f"query p50 latency, ms (encode + search{on}, log scale)")
    ax.set_ylabel("overall score (mean of the task scores)")
    ax.set_title(title or "Track 1: overall score against query latency")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    if usable:
        fx = sorted((p for r, p in usable if r["name"] in front), key=lambda p: p[0])
        _place_labels(ax, _label_groups(usable), [p for _, p in usable], fx)
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out
