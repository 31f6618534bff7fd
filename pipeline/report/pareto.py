"""The Pareto plot, per model: p50 latency against its task's per-sample worst-case fidelity figure
(``iou_min``, ``embedding_cosine_min``, ``top1_agreement_min``, ``rel_err_max``, ...; ``cosine_min``
for older metrics) and against top-1 accuracy. Builds that fail their gates are drawn as X; failed
builds have no numbers and are named under the panel.

Cosine figures are drawn on a "nines" axis (0.9, 0.99, 0.999, ...), where quantized and float builds with
cosines of 0.9995 and 0.9999999 are told apart; latency goes logarithmic when builds span more than
a factor of 20. Each label sits beside its own point (nearer to it than to any other, joined to it
by a thin line); builds that land on one spot share one label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.evaluate.verdict import FAILED, FAILS_GATES
from pipeline.report.summary import FALLBACK_FIGURE, model_figures

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


def lower_is_better(key: str) -> bool:
    """Error figures (``abs_err_max``, ``rel_err_max``) are better when lower."""
    return key.endswith("_max") or key.endswith("_err")


def _panel(ax: Any, rows: list[dict[str, Any]], key: str, label: str, title: str) -> None:
    """One model's builds: p50 against ``key`` (axis ``label``); failed builds (no numbers) named in a note."""
    pts = [r for r in rows if r["p50_ms"] is not None and r[key] is not None]
    failed = [r["build"] for r in rows if r.get("verdict") == FAILED]
    ax.grid(True, alpha=0.3, which="both")
    if failed:
        ax.text(0.01, 0.01, "failed, not plotted: " + ", ".join(failed), ha="left", va="bottom", fontsize=7,
                color="dimgray", transform=ax.transAxes)
    if not pts:
        ax.text(0.5, 0.5, f"no build reports {label}", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
        return
    xs = [float(r["p50_ms"]) for r in pts]
    raw = [float(r[key]) for r in pts]
    lower = lower_is_better(key)
    ys = [nines(v) for v in raw] if "cosine" in key else raw
    log_x = min(xs) > 0 and max(xs) / min(xs) > LOG_X_SPAN
    front = pareto_front([(x, -v if lower else v) for x, v in zip(xs, raw)])
    for x, y, r, on_front in zip(xs, ys, pts, front):
        ax.scatter([x], [y], c="tab:red" if on_front else "tab:blue",
                   marker="X" if r["gates_passed"] is False or r.get("verdict") == FAILS_GATES else "o",
                   s=80 if on_front else 50, zorder=3, edgecolors="black", linewidths=0.5)
    # placed after layout, when text sizes are known (see _place_labels): one label per cluster of
    # coinciding points, anchored on the cluster's first point
    ax._pareto_points = [(r["build"], x, y) for r, x, y in zip(pts, xs, ys)]
    ax._pareto_labels = [
        ("\n".join(pts[j]["build"] for j in group), xs[group[0]], ys[group[0]], tuple(group))
        for group in _clusters(xs, ys, log_x)
    ]
    line = sorted((x, y) for x, y, on_front in zip(xs, ys, front) if on_front)
    if len(line) > 1:
        lx, ly = zip(*line)
        ax.step(lx, ly, where="post", color="tab:red", linestyle="--", linewidth=1, alpha=0.7, zorder=2)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms (lower is better)" + (", log scale" if log_x else ""))
    if "cosine" in key:
        ticks, labels = _nines_ticks(ys)
        ax.set_yticks(ticks, labels)
        ax.set_ylim(ticks[0] - 0.3, ticks[-1] + 0.5)
        ax.set_ylabel(f"{label} vs source outputs (higher is better)")
    elif lower:
        if min(ys) > 0 and max(ys) / min(ys) > LOG_X_SPAN:
            ax.set_yscale("log")
        ax.set_ylabel(f"{label} vs source outputs (lower is better)")
    else:
        lo, hi = min(ys), max(ys)
        pad = max(0.005, 0.15 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi) + pad)
        ax.set_ylabel(f"{label} (higher is better)")
    ax.margins(x=0.2)
    ax.set_title(title)


# (dx, dy) in points, horizontal and vertical alignment: tried in order (nearest first)
_SPOTS = [
    (7, 4, "left", "bottom"), (7, -4, "left", "top"), (-7, 4, "right", "bottom"), (-7, -4, "right", "top"),
    (0, 10, "center", "bottom"), (0, -10, "center", "top"), (7, 22, "left", "bottom"), (7, -22, "left", "top"),
    (-7, 22, "right", "bottom"), (-7, -22, "right", "top"), (0, 28, "center", "bottom"), (0, -28, "center", "top"),
]
MARKER_PT = 5.0  # half a marker's size, in points: a label box this close to a point covers it
# the line from a label to its point (it ends just outside the marker)
LEADER = {"arrowstyle": "-", "color": "0.45", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 4}


def _label_score(box: Any, own: Any, others: list[Any], placed: list[Any], frame: Any, pad: float) -> int:
    """How good a label box is: clear of other labels (4), nearer its own point than any other point
    and covering none (2), inside the axes (1)."""
    def dist(p: Any) -> float:
        cx, cy = min(max(p[0], box.x0), box.x1), min(max(p[1], box.y0), box.y1)  # nearest point of the box
        return math.hypot(p[0] - cx, p[1] - cy)

    clear = not any(box.overlaps(other) for other in placed)
    beside = all(dist(own) < dist(p) and dist(p) > pad for p in others)
    inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    return 4 * clear + 2 * beside + inside


def _place_labels(fig: Any, ax: Any) -> None:
    """Annotate each point cluster at the first nearby spot whose label overlaps no other label and
    sits nearer its own point than any other (covering none); a thin line joins label and point."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    pad = MARKER_PT * fig.dpi / 72
    points = [ax.transData.transform((x, y)) for _, x, y in getattr(ax, "_pareto_points", [])]
    placed: list[Any] = []
    for text, x, y, members in getattr(ax, "_pareto_labels", []):
        own = ax.transData.transform((x, y))
        others = [p for k, p in enumerate(points) if k not in members]
        best: tuple[int, Any] | None = None
        for dx, dy, ha, va in _SPOTS:
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, fontsize=8)
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            ann.remove()
            score = _label_score(box, own, others, placed, frame, pad)
            if best is None or score > best[0]:
                best = (score, (dx, dy, ha, va, box))
            if score == 7:
                break
        dx, dy, ha, va, box = best[1]
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, fontsize=8,
                    arrowprops=LEADER)
        placed.append(box)


def fidelity_key(rows: list[dict[str, Any]]) -> str:
    """The y axis of a model's fidelity panel: its task's first per-sample worst-case figure that
    its builds report, else the raw-output cosine_min."""
    task = next((r["task"] for r in rows if r.get("task")), None)
    figures = model_figures(task, rows)
    return figures[0] if figures else FALLBACK_FIGURE


def plot(table: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the PNG to ``path``: per model, latency against its task's fidelity figure and against
    top-1 accuracy; one labelled point per build, each model's Pareto front in red."""
    from matplotlib import pyplot as plt

    fig = figure(table)
    path = Path(path)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def figure(table: list[dict[str, Any]]) -> Any:
    """The matplotlib figure of :func:`plot` (labels placed; the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D

    models: dict[str, list[dict[str, Any]]] = {}
    for r in table:
        models.setdefault(r.get("model") or "–", []).append(r)
    models = dict(sorted(models.items()))
    fig, axes = plt.subplots(max(1, len(models)), 2, figsize=(14, 5.5 * max(1, len(models))), squeeze=False)
    for (model, rows), (ax_fid, ax_acc) in zip(models.items(), axes):
        key = fidelity_key(rows)
        _panel(ax_fid, rows, key, key, f"{model}: latency vs {key}")
        _panel(ax_acc, rows, "top1", "top-1 accuracy", f"{model}: latency vs top-1 accuracy")
    legend = [
        Line2D([], [], marker="o", color="w", markerfacecolor="tab:red", markeredgecolor="black", markersize=9,
               label="on its model's Pareto front (dashed)"),
        Line2D([], [], marker="o", color="w", markerfacecolor="tab:blue", markeredgecolor="black", markersize=8,
               label="dominated"),
        Line2D([], [], marker="X", color="w", markerfacecolor="grey", markeredgecolor="black", markersize=9,
               label="fails its gates"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(f"{len(table)} builds: latency against fidelity and accuracy; failed builds are named, not plotted")
    height = fig.get_figheight()  # keep 0.5 in for the legend and 0.6 in for the title, whatever the rows
    fig.tight_layout(rect=(0, 0.5 / height, 1, 1 - 0.6 / height))
    for ax in axes.flat:
        _place_labels(fig, ax)
    return fig
