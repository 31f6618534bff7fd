"""The leaderboard of a Hydra multirun sweep (``leaderboard.md`` and ``leaderboard.csv`` in the sweep folder).

Only points whose gates passed are ranked; points that failed or missed a gate are listed apart,
with the reason, and are never recommended. Ranking is by p50 latency, and honest about noise: a
point whose p50 is within the measurement noise of the first point of the rank above shares that rank (the
noise of a point is the relative half-width of its speedup interval, from the reference and build
timed in alternating blocks in the same job; two points tie when their p50 ratio is inside the wider
of their two). Latencies from different hosts are never compared: every host gets its own ranking.

Written by :class:`LeaderboardCallback` at the end of ``python -m pipeline.sweep -m ...``; also
``write_leaderboard(sweep_dir)`` to redo it by hand.
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
    "tie",
    "job",
    "host",
    "overrides",
    "status",
    "p50_ms",
    "p90_ms",
    "noise",
    "speedup",
    "speedup_low",
    "speedup_high",
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
        point = _read_json(point_file)
        if point is None:  # listed apart as failed, never ranked (and the others still are)
            point = {"status": "failed", "error": f"unreadable {POINT_FILE}"}
        metrics_file = point_file.parent / METRICS_FILE
        metrics = _read_json(metrics_file) if metrics_file.is_file() else None
        flat = row(point_file.parent.name, metrics) if metrics is not None else {}
        status = point.get("status") or "failed"
        gates = "–"
        if flat:
            gates = "pass" if flat.get("gates_passed") else f"FAIL: {flat.get('gate_failures')}"
            if flat.get("gates_passed") and not flat.get("gates_checked"):
                gates = "none set"
        out.append(
            {
                "job": point.get("job") if point.get("job") is not None else point_file.parent.name,
                "host": point.get("host") or "unknown",
                "overrides": " ".join(point.get("overrides") or []) or "(defaults)",
                "status": status if status != "failed" else f"failed: {point.get('error')}",
                "ok": status == "ok" and bool(flat) and bool(flat.get("gates_passed")),
                "p50_ms": flat.get("p50_ms"),
                "p90_ms": flat.get("p90_ms"),
                "speedup": flat.get("speedup"),
                "speedup_low": flat.get("speedup_low"),
                "speedup_high": flat.get("speedup_high"),
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


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when it cannot be read or is not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def noise(point: dict[str, Any]) -> float:
    """Relative measurement noise of a point's latency: half the width of its speedup interval over
    the speedup (0 when the interval is unknown)."""
    lo, hi, s = point.get("speedup_low"), point.get("speedup_high"), point.get("speedup")
    if lo is None or hi is None or not s:
        return 0.0
    return max(0.0, (float(hi) - float(lo)) / 2.0 / float(s))


def within_noise(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two points' p50 differ by no more than the wider of their noises."""
    if not a.get("p50_ms") or not b.get("p50_ms"):
        return False
    ratio = max(a["p50_ms"], b["p50_ms"]) / min(a["p50_ms"], b["p50_ms"])
    return ratio - 1.0 <= max(noise(a), noise(b))


def rank(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gate-passing points with a latency, per host, sorted by p50 and numbered (competition ranking:
    a point within noise of the first point of the rank above shares that rank, ``tie`` True); then
    every other point (failed, gates missed, no latency), unranked, in job order."""
    ranked: list[dict[str, Any]] = []
    for host in sorted({p["host"] for p in points if p["ok"] and p["p50_ms"] is not None}):
        here = sorted((p for p in points if p["ok"] and p["p50_ms"] is not None and p["host"] == host),
                      key=lambda p: (p["p50_ms"], str(p["job"])))
        leader: dict[str, Any] | None = None  # the first point of the current rank
        for i, p in enumerate(here):
            p["noise"] = noise(p)
            if leader is not None and within_noise(leader, p):
                p["rank"], p["tie"] = leader["rank"], True
                leader["tie"] = True
            else:
                p["rank"], p["tie"], leader = i + 1, False, p
        ranked += here
    rest = [p for p in points if p not in ranked]
    for p in rest:
        p["rank"], p["tie"], p["noise"] = None, False, None
    rest.sort(key=lambda p: (0, int(p["job"]), "") if str(p["job"]).isdigit() else (1, 0, str(p["job"])))
    return ranked + rest


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, spec) if math.isfinite(value) else str(value)
    return str(value)


def common_overrides(points: list[dict[str, Any]]) -> list[str]:
    """Overrides that every point shares (shown once above the table instead of on every row)."""
    sets = [p["overrides"].split() for p in points if p["overrides"] != "(defaults)"]
    if len(sets) < 2 or len(sets) != len(points):
        return []
    return [o for o in sets[0] if all(o in s for s in sets[1:])]


def _esc(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _ranked_table(points: list[dict[str, Any]], shared: list[str]) -> str:
    from tabulate import tabulate

    header = ["#", "overrides", "p50 ms", "±noise", "p90 ms", "speedup", "cosine min", "top-1 agree", "top-1",
              "acc. drop", "MB", "gates", "job"]
    body = [
        [
            f"{p['rank']}{'=' if p['tie'] else ''}",
            _esc(" ".join(o for o in p["overrides"].split() if o not in shared) or "(shared only)"),
            _fmt(p["p50_ms"], ".3f"),
            f"{100 * p['noise']:.1f}%" if p.get("noise") else "–",
            _fmt(p["p90_ms"], ".3f"),
            _fmt(p["speedup"], ".2f"),
            _fmt(p["cosine_min"], ".6f"),
            _fmt(p["top1_agreement"], ".4f"),
            _fmt(p["top1"], ".4f"),
            _fmt(p["accuracy_drop"], ".4f"),
            _fmt(p["size_mb"], ".3f"),
            _esc(p["gates"]),
            str(p["job"]),
        ]
        for p in points
    ]
    return tabulate(body, headers=header, tablefmt="github", disable_numparse=True)


def _rest_table(points: list[dict[str, Any]], shared: list[str]) -> str:
    from tabulate import tabulate

    header = ["job", "overrides", "why not ranked", "p50 ms", "cosine min", "host"]
    body = [
        [
            str(p["job"]),
            _esc(" ".join(o for o in p["overrides"].split() if o not in shared) or "(shared only)"),
            _esc(p["status"] if str(p["status"]).startswith("failed") else p["gates"]),
            _fmt(p["p50_ms"], ".3f"),
            _fmt(p["cosine_min"], ".6f"),
            _esc(p["host"]),
        ]
        for p in points
    ]
    return tabulate(body, headers=header, tablefmt="github", disable_numparse=True)


def best(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recommended points: rank 1 on the host with the most ranked points (several when tied)."""
    ranked = [p for p in points if p["rank"] is not None]
    if not ranked:
        return []
    hosts = sorted({p["host"] for p in ranked}, key=lambda h: (-sum(p["host"] == h for p in ranked), h))
    return [p for p in ranked if p["host"] == hosts[0] and p["rank"] == 1]


def to_markdown(points: list[dict[str, Any]], sweep_dir: Path) -> str:
    shared = common_overrides(points)
    ranked = [p for p in points if p["rank"] is not None]
    rest = [p for p in points if p["rank"] is None]
    hosts = sorted({p["host"] for p in ranked})
    lines = [
        f"# Sweep leaderboard: {sweep_dir}",
        "",
        "Only points that passed their gates are ranked, by p50 latency (lower is better). `2=`: within "
        "measurement noise of another point of that rank (±noise: the point's relative noise, from its "
        "interleaved reference timing); speedup is against the plain fp32 export measured in the same job.",
        *([f"Every point also has: `{' '.join(shared)}`."] if shared else []),
        "",
    ]
    for host in hosts:
        if len(hosts) > 1:
            lines += [f"## Measured on {host}", "", "Latencies from different hosts are not compared.", ""]
        lines += [_ranked_table([p for p in ranked if p["host"] == host], shared), ""]
    if not ranked:
        lines += ["No point passed its gates: nothing to recommend.", ""]
    if rest:
        lines += [f"## Not ranked ({len(rest)}: failed, or missed a gate)", "", _rest_table(rest, shared), ""]
    top = best(points)
    if top:
        if len(top) == 1:
            lines += [f"Fastest that passes its gates: job {top[0]['job']} ({top[0]['overrides']}). Make it a DVC build:"]
        else:
            jobs = ", ".join(str(p["job"]) for p in top)
            lines += [f"Fastest that pass their gates, tied within noise: jobs {jobs}; pick by size or fidelity. "
                      "Make one a DVC build:"]
        lines += ["", f"    onnxbuild promote {top[0]['job_dir']} --name NAME", ""]
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
