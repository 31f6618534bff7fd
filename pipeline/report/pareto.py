"""The Pareto plot: p50 latency against fidelity (cosine_min) and against top-1 accuracy.

Fidelity is drawn on a "nines" axis (0.9, 0.99, 0.999, ...), where quantized and float builds with
cosines of 0.9995 and 0.9999999 are told apart; latency goes logarithmic when builds span more than
a factor of 20. Builds that land on one spot share one label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MAX_NINES = 7.0  # 1 - cos below 1e-7 is float32 rounding: drawn at the top of the axis
LOG_X_SPAN = 20.0  # use a log latency axis when max/min p50 exceeds this


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


def nines(cosine: float) -> float:
    """-log10(1 - cosine), capped: 0.9 -> 1, 0.999 -> 3; 0 -> 0; negative cosines go below 0."""
    return min(MAX_NINES, -math.log10(max(1.0 - cosine, 10**-MAX_NINES)))


def _nines_ticks(values: Sequence[float]) -> tuple[list[float], list[str]]:
    hi = math.ceil(max(values))
    lo = min(math.floor(min(values)), hi - 2)
    ticks, labels = [], []
    for k in range(int(lo), int(hi) + 1):
        ticks.append(float(k))
        if k <= 0:
            labels.append(f"{1 - 10**-k:g}")
        elif k <= 4:
            labels.append("0." + "9" * k)
        elif k < MAX_NINES:
            labels.append(f"1 − 1e-{k}")
        else:
            labels.append(f"≥ 1 − 1e-{k}")
    return ticks, labels


def _clusters(xs: list[float], ys: list[float], log_x: bool) -> list[list[int]]:
    """Group points that would sit on top of each other (2% of each axis span)."""
    def norm(vals: list[float]) -> list[float]:
        lo, hi = min(vals), max(vals)
        span = (hi - lo) or 1.0
        return [(v - lo) / span for v in vals]

    nx = norm([math.log10(x) for x in xs] if log_x else xs)
    ny = norm(ys)
    groups: list[list[int]] = []
    for i in range(len(xs)):
        for g in groups:
            j = g[0]
            if abs(nx[i] - nx[j]) < 0.02 and abs(ny[i] - ny[j]) < 0.02:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def _panel(ax: Any, table: list[dict[str, Any]], key: str, label: str) -> None:
    pts = [r for r in table if r["p50_ms"] is not None and r[key] is not None]
    ax.grid(True, alpha=0.3, which="both")
    if not pts:
        ax.text(0.5, 0.5, f"no build reports {label}", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label)
        return
    xs = [float(r["p50_ms"]) for r in pts]
    raw = [float(r[key]) for r in pts]
    ys = [nines(v) for v in raw] if key == "cosine_min" else raw
    log_x = min(xs) > 0 and max(xs) / min(xs) > LOG_X_SPAN
    # one front per model: a build competes with the other builds of its own source, not other tasks
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(pts):
        groups.setdefault(r.get("model"), []).append(i)
    front = [False] * len(pts)
    for idx in groups.values():
        for i, on_front in zip(idx, pareto_front([(xs[i], raw[i]) for i in idx])):
            front[i] = on_front
    for x, y, r, on_front in zip(xs, ys, pts, front):
        ax.scatter([x], [y], c="tab:red" if on_front else "tab:blue", marker="X" if r["gates_passed"] is False else "o",
                   s=80 if on_front else 50, zorder=3, edgecolors="black", linewidths=0.5)
    ax._pareto_labels = [  # placed after layout, when text sizes are known (see _place_labels)
        ("\n".join(pts[j]["build"] for j in group), xs[group[0]], ys[group[0]]) for group in _clusters(xs, ys, log_x)
    ]
    for idx in groups.values():
        line = sorted((xs[i], ys[i]) for i in idx if front[i])
        if len(line) > 1:
            lx, ly = zip(*line)
            ax.step(lx, ly, where="post", color="tab:red", linestyle="--", linewidth=1, alpha=0.7, zorder=2)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms (lower is better)" + (", log scale" if log_x else ""))
    if key == "cosine_min":
        ticks, labels = _nines_ticks(ys)
        ax.set_yticks(ticks, labels)
        ax.set_ylim(ticks[0] - 0.3, ticks[-1] + 0.5)
        ax.set_ylabel("cosine_min vs source outputs (higher is better)")
    else:
        lo, hi = min(ys), max(ys)
        pad = max(0.005, 0.15 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi) + pad)
        ax.set_ylabel(f"{label} (higher is better)")
    ax.margins(x=0.2)
    ax.set_title(f"latency vs {label}")


# (dx, dy) in points, horizontal and vertical alignment: tried in order until a label overlaps nothing
_SPOTS = [
    (7, 4, "left", "bottom"), (7, -4, "left", "top"), (-7, 4, "right", "bottom"), (-7, -4, "right", "top"),
    (0, 10, "center", "bottom"), (0, -10, "center", "top"), (7, 22, "left", "bottom"), (7, -22, "left", "top"),
    (-7, 22, "right", "bottom"), (-7, -22, "right", "top"),
]


def _place_labels(fig: Any, ax: Any) -> None:
    """Annotate each point cluster at the first nearby spot where its label overlaps no other label."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for text, x, y in getattr(ax, "_pareto_labels", []):
        # best spot: inside the axes and clear of other labels; else clear of labels; else the first spot
        best: tuple[int, Any] | None = None
        for dx, dy, ha, va in _SPOTS:
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, fontsize=8)
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            clear = not any(box.overlaps(other) for other in placed)
            score = 2 * clear + inside
            ann.remove()
            if best is None or score > best[0]:
                best = (score, (dx, dy, ha, va, box))
            if score == 3:
                break
        dx, dy, ha, va, box = best[1]
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, fontsize=8)
        placed.append(box)


def plot(table: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the two-panel PNG to ``path``; one labelled point per build, the Pareto front in red."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    _panel(axes[0], table, "cosine_min", "fidelity")
    _panel(axes[1], table, "top1", "top-1 accuracy")
    legend = [
        Line2D([], [], marker="o", color="w", markerfacecolor="tab:red", markeredgecolor="black", markersize=9,
               label="on its model's Pareto front (dashed)"),
        Line2D([], [], marker="o", color="w", markerfacecolor="tab:blue", markeredgecolor="black", markersize=8,
               label="dominated"),
        Line2D([], [], marker="X", color="w", markerfacecolor="grey", markeredgecolor="black", markersize=9,
               label="missed a gate"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(f"{len(table)} builds: latency against fidelity and accuracy")
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    for ax in axes:
        _place_labels(fig, ax)
    path = Path(path)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
