"""retrieval_pareto.png: Track 1's overall score against query p50 latency, one labelled point per
retriever and index option, the Pareto front drawn as a step line (Track 2's plot is plot.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmctr.bench.plot import draw_front, label_groups, pareto_front, place_labels

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
        place_labels(ax, label_groups(usable), [p for _, p in usable], fx)
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out
