"""The Pareto plot: p50 latency against fidelity (cosine_min) and against top-1 accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (latency, quality) points: True where no other point is at least as fast and as good
    while strictly better in one of the two (lower latency is better, higher quality is better)."""
    flags = []
    for i, (lat, q) in enumerate(points):
        dominated = any(
            lat2 <= lat and q2 >= q and (lat2 < lat or q2 > q) for j, (lat2, q2) in enumerate(points) if j != i
        )
        flags.append(not dominated)
    return flags


def _panel(ax: Any, table: list[dict[str, Any]], key: str, label: str) -> None:
    pts = [(r["p50_ms"], r[key], r["build"], r["gates_passed"]) for r in table
           if r["p50_ms"] is not None and r[key] is not None]
    ax.set_xlabel("p50 latency (ms, lower is better)")
    ax.set_ylabel(f"{label} (higher is better)")
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(useOffset=False, style="plain", axis="both")
    if not pts:
        ax.text(0.5, 0.5, f"no build reports {label}", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    front = pareto_front([(p[0], p[1]) for p in pts])
    for (x, y, name, passed), on_front in zip(pts, front):
        color = "tab:red" if on_front else "tab:blue"
        marker = "X" if passed is False else "o"
        ax.scatter([x], [y], c=color, marker=marker, s=70 if on_front else 45, zorder=3,
                   edgecolors="black", linewidths=0.5)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=8)
    line = sorted((p[0], p[1]) for p, f in zip(pts, front) if f)
    if len(line) > 1:
        xs, ys = zip(*line)
        ax.step(xs, ys, where="post", color="tab:red", linestyle="--", linewidth=1, alpha=0.7, zorder=2)
    ax.margins(x=0.15, y=0.15)


def plot(table: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the two-panel PNG to ``path``; one labelled point per build, the Pareto front in red."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    _panel(axes[0], table, "cosine_min", "fidelity: min cosine vs source")
    _panel(axes[1], table, "top1", "top-1 accuracy")
    legend = [
        Line2D([], [], marker="o", color="w", markerfacecolor="tab:red", markeredgecolor="black", markersize=9,
               label="on the Pareto front"),
        Line2D([], [], marker="o", color="w", markerfacecolor="tab:blue", markeredgecolor="black", markersize=8,
               label="dominated"),
        Line2D([], [], marker="X", color="w", markerfacecolor="grey", markeredgecolor="black", markersize=9,
               label="missed a gate"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(f"Latency against fidelity and accuracy ({len(table)} builds)")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    path = Path(path)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
