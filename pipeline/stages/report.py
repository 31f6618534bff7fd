"""Stage ``report``: one summary over every build of the composed project.

    python -m pipeline.stages.report --params params.yaml --metrics-dir metrics/builds --logs logs --out reports

writes ``reports/summary.md`` (what to ship per model; one table per model with its task's fidelity
figures, verdicts and the gates each build used), ``reports/pareto.png`` (per model, latency against
fidelity and accuracy, Pareto front marked) and ``reports/builds.csv`` (flat columns, for
``dvc plots``). Every build of ``params.yaml`` is listed: a build without metrics (or with metrics
older than its latest failed stage run) gets verdict ``failed`` and the one-line error of that stage's
log (``<logs>/<stage>/<model or build>.log``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline.stages.runner import LOG_ROOT, main_for


def configure(parser: argparse.ArgumentParser) -> None:
    # --params (the composed project, default params.yaml) is added by the runner
    parser.add_argument("--metrics-dir", required=True, help="folder of per-build metrics JSON files")
    parser.add_argument("--logs", default=str(LOG_ROOT),
                        help=f"folder of stage logs, read for builds that failed (default: {LOG_ROOT})")
    parser.add_argument("--out", required=True, help="report folder to write")


def body(args: argparse.Namespace, log: logging.Logger) -> None:
    from pipeline.report import write_report

    summary = write_report(args.metrics_dir, args.out, params=args.params, logs_dir=args.logs)
    log.info("wrote %s", summary)


def main(argv: Sequence[str] | None = None) -> int:
    return main_for("report", configure, body, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
