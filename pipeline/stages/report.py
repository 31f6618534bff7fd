"""Stage ``report``: one summary over all builds.

    python -m pipeline.stages.report --metrics-dir metrics/builds --out reports

writes ``reports/summary.md`` (Markdown table), ``reports/pareto.png`` (latency against fidelity and
accuracy, Pareto front marked) and ``reports/builds.csv`` (flat columns, for ``dvc plots``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline.stages.runner import main_for


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-dir", required=True, help="folder of per-build metrics JSON files")
    parser.add_argument("--out", required=True, help="report folder to write")


def body(args: argparse.Namespace, log: logging.Logger) -> None:
    from pipeline.report import write_report

    summary = write_report(args.metrics_dir, args.out)
    log.info("wrote %s", summary)


def main(argv: Sequence[str] | None = None) -> int:
    return main_for("report", configure, body, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
