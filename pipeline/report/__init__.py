"""The report over all builds: ``summary.md`` (what to ship, one table per model, verdicts and the
gates each build used), ``pareto.png``, ``builds.csv``.

Given the composed project (``params.yaml``) and the stage logs, it lists every declared build,
including those whose stages failed (verdict ``failed`` with the stage's one-line error)."""

from __future__ import annotations

from pathlib import Path

from pipeline.fsutil import atomic_dir

SUMMARY = "summary.md"
PLOT = "pareto.png"
CSV = "builds.csv"


def write_report(
    metrics_dir: str | Path, out_dir: str | Path, params: str | Path | None = None, logs_dir: str | Path | None = None
) -> Path:
    """Write the report into ``out_dir`` atomically; return the path of ``summary.md``.

    ``metrics_dir/*.json``: one metrics file per build. ``params``: the composed project (every
    build in it is listed; without it, one row per metrics file). ``logs_dir``: the stage logs,
    read for builds with no or stale metrics."""
    from pipeline.report.collect import collect
    from pipeline.report.markdown import to_markdown
    from pipeline.report.pareto import plot
    from pipeline.report.summary import to_csv

    report = collect(metrics_dir, params, logs_dir)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        plot(report.table, tmp / PLOT)
        (tmp / CSV).write_text(to_csv(report.table))
        (tmp / SUMMARY).write_text(to_markdown(report, PLOT))
    return out_dir / SUMMARY


__all__ = ["CSV", "PLOT", "SUMMARY", "write_report"]
