"""The report over all builds: ``summary.md`` (Markdown table), ``pareto.png``, ``builds.csv``."""

from __future__ import annotations

from pathlib import Path

from pipeline.fsutil import atomic_dir

SUMMARY = "summary.md"
PLOT = "pareto.png"
CSV = "builds.csv"


def write_report(metrics_dir: str | Path, out_dir: str | Path) -> Path:
    """Read ``metrics_dir/*.json`` (one per build) and write the report into ``out_dir`` atomically.

    Returns the path of ``summary.md``.
    """
    from pipeline.report.pareto import plot
    from pipeline.report.summary import load_metrics, rows, to_csv, to_markdown

    metrics = load_metrics(metrics_dir)
    table = rows(metrics)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        plot(table, tmp / PLOT)
        (tmp / CSV).write_text(to_csv(table))
        (tmp / SUMMARY).write_text(to_markdown(table, metrics, PLOT))
    return out_dir / SUMMARY


__all__ = ["CSV", "PLOT", "SUMMARY", "write_report"]
