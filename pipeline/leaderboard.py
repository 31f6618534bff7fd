"""The leaderboard of a Hydra multirun sweep: points ranked by p50 latency, with fidelity,
accuracy and gate results (``leaderboard.md`` and ``leaderboard.csv`` in the sweep folder).

Written by :class:`LeaderboardCallback` at the end of ``python -m pipeline.sweep -m ...``; also
``write_leaderboard(sweep_dir)`` to redo it by hand. Failed points are listed last, with their error.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from pipeline.fsutil import write_text

MARKDOWN = "leaderboard.md"
CSV = "leaderboard.csv"
COLUMNS = (
    "rank",
    "job",
    "overrides",
    "status",
    "p50_ms",
    "p90_ms",
    "speedup",
    "cosine_min",
    "max_abs_err",
    "top1_agreement",
    "top1",
    "accuracy_drop",
    "size_mb",
    "gates",
    "job_dir",
)


def load_points(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job folder holding a ``point.json`` (and ``metrics.json`` when it got that far)."""
    from pipeline.report.summary import row
    from pipeline.sweep import METRICS_FILE, POINT_FILE

    sweep_dir = Path(sweep_dir)
    out = []
    for point_file in sorted(sweep_dir.glob(f"*/{POINT_FILE}")):
        point = json.loads(point_file.read_text())
        metrics_file = point_file.parent / METRICS_FILE
        flat = row(point_file.parent.name, json.loads(metrics_file.read_text())) if metrics_file.is_file() else {}
        gates = "–"
        if flat:
            gates = "pass" if flat.get("gates_passed") else f"FAIL: {flat.get('gate_failures')}"
            if flat.get("gates_passed") and not flat.get("gates_checked"):
                gates = "none set"
        out.append(
            {
                "job": point.get("job") if point.get("job") is not None else point_file.parent.name,
                "overrides": " ".join(point.get("overrides") or []) or "(defaults)",
                "status": point.get("status") if point.get("status") != "failed" else f"failed: {point.get('error')}",
                "p50_ms": flat.get("p50_ms"),
                "p90_ms": flat.get("p90_ms"),
                "speedup": flat.get("speedup"),
                "cosine_min": flat.get("cosine_min"),
                "max_abs_err": flat.get("max_abs_err"),
                "top1_agreement": flat.get("top1_agreement"),
                "top1": flat.get("top1"),
                "accuracy_drop": flat.get("accuracy_drop"),
                "size_mb": flat.get("size_mb"),
                "gates": gates,
                "job_dir": str(point_file.parent),
            }
        )
    return out


def rank(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort by p50 (points without a latency last, in job order) and number them."""
    ranked = sorted(points, key=lambda p: (p["p50_ms"] is None, p["p50_ms"] if p["p50_ms"] is not None else math.inf, str(p["job"])))
    for i, p in enumerate(ranked, 1):
        p["rank"] = i if p["p50_ms"] is not None else None
    return ranked


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def common_overrides(points: list[dict[str, Any]]) -> list[str]:
    """Overrides that every point shares (shown once above the table instead of on every row)."""
    sets = [p["overrides"].split() for p in points if p["overrides"] != "(defaults)"]
    if len(sets) < 2 or len(sets) != len(points):
        return []
    return [o for o in sets[0] if all(o in s for s in sets[1:])]


def to_markdown(points: list[dict[str, Any]], sweep_dir: Path) -> str:
    from tabulate import tabulate

    shared = common_overrides(points)

    header = ["#", "overrides", "p50 ms", "p90 ms", "speedup", "cosine min", "top-1 agree", "top-1", "acc. drop", "MB", "gates", "status", "job"]
    body = [
        [
            _fmt(p["rank"], "d"),
            (" ".join(o for o in p["overrides"].split() if o not in shared) or "(shared only)").replace("|", "\\|"),
            _fmt(p["p50_ms"], ".3f"),
            _fmt(p["p90_ms"], ".3f"),
            _fmt(p["speedup"], ".2f"),
            _fmt(p["cosine_min"], ".6f"),
            _fmt(p["top1_agreement"], ".4f"),
            _fmt(p["top1"], ".4f"),
            _fmt(p["accuracy_drop"], ".4f"),
            _fmt(p["size_mb"], ".3f"),
            str(p["gates"]).replace("|", "\\|"),
            str(p["status"]).replace("|", "\\|"),
            str(p["job"]),
        ]
        for p in points
    ]
    best = next((p for p in points if p["rank"] == 1), None)
    lines = [
        f"# Sweep leaderboard: {sweep_dir}",
        "",
        "Ranked by p50 latency (lower is better); speedup is against the plain fp32 export measured in the same job.",
        *([f"Every point also has: `{' '.join(shared)}`."] if shared else []),
        "",
        tabulate(body, headers=header, tablefmt="github", disable_numparse=True),
        "",
    ]
    if best is not None:
        lines += [
            f"Fastest: job {best['job']} ({best['overrides']}). Make it a DVC build:",
            "",
            f"    onnxbuild promote {best['job_dir']} --name NAME",
            "",
        ]
    return "\n".join(lines)


def to_csv(points: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for p in points:
        writer.writerow({k: ("" if p.get(k) is None else p.get(k)) for k in COLUMNS})
    return buf.getvalue()


def write_leaderboard(sweep_dir: str | Path) -> Path | None:
    """Write leaderboard.md and leaderboard.csv into ``sweep_dir``; None when it holds no points."""
    sweep_dir = Path(sweep_dir)
    points = rank(load_points(sweep_dir))
    if not points:
        return None
    write_text(sweep_dir / CSV, to_csv(points))
    write_text(sweep_dir / MARKDOWN, to_markdown(points, sweep_dir))
    return sweep_dir / MARKDOWN


class LeaderboardCallback(Callback):
    """Hydra callback: rank the sweep's points when the multirun ends (any launcher)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        import logging

        out = write_leaderboard(config.hydra.sweep.dir)
        log = logging.getLogger("onnxbuild.sweep")
        if out is not None:
            print(f"leaderboard: {out} (and {out.with_name(CSV)})")
            log.info("leaderboard: %s", out)
