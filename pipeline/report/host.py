"""Where the numbers come from: the host each metrics file was measured on, against this host.

A fresh clone's ``dvc repro`` skips every evaluate stage whose artifact and params match the
committed ``dvc.lock``, so its report would show latencies measured on another machine. Every
metrics file records its host (:func:`pipeline.evaluate.environment.host`); the report and
``make build`` (``python -m pipeline.report.host``) say plainly when that is not this host, and name
the one command that re-measures here (:data:`REMEASURE`).

    python -m pipeline.report.host [--metrics-dir metrics/builds]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.evaluate.gates import metric_value

REMEASURE = "make remeasure"  # the Makefile target: every evaluate@BUILD forced, then the report
UNRECORDED = "an unrecorded host"


def force_one(build: str) -> str:
    """The DVC command that re-measures one build here, then refreshes the report."""
    return f"dvc repro --force -s evaluate@{build} && dvc repro report"


def recorded_host(metrics: Mapping[str, Any]) -> str | None:
    """The host id a build's metrics were measured on (None: a file written before hosts were recorded)."""
    value = metric_value(metrics, "environment.host.id")
    return str(value) if value else None


def _describe_unrecorded(metrics: Mapping[str, Any]) -> str:
    cpu = metric_value(metrics, "environment.cpu.model")
    cores = metric_value(metrics, "environment.cpu.cores")
    if cpu:
        return f"{UNRECORDED} ({cpu}{f', {cores} cores' if cores else ''})"
    return UNRECORDED


def hosts_of(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """``{host description: [builds measured there]}`` in first-seen (build name) order."""
    out: dict[str, list[str]] = {}
    for name, m in sorted(metrics.items()):
        out.setdefault(recorded_host(m) or _describe_unrecorded(m), []).append(name)
    return out


def elsewhere(metrics: Mapping[str, Mapping[str, Any]], here: str) -> dict[str, list[str]]:
    """The hosts other than ``here`` (a host id) and the builds measured on each."""
    return {h: names for h, names in hosts_of(metrics).items() if h != here}


REPORT_HOST = "the host that wrote this report"  # a report file can be read (or restored by DVC) elsewhere


def host_lines(metrics: Mapping[str, Mapping[str, Any]], here: str | None = None,
               this: str = "this host") -> list[str]:
    """Plain sentences: where the numbers were measured and, when that is not ``here`` (default: this
    host), that they are from another machine and how to re-measure here. Empty without metrics.
    ``this`` names ``here`` in the sentences (:data:`REPORT_HOST` in a report file, which DVC may
    restore from its cache or run-cache on another machine without rerunning the report)."""
    if not metrics:
        return []
    if here is None:
        from pipeline.evaluate.environment import host

        here = host()["id"]
    other = elsewhere(metrics, here)
    if not other:
        return [f"All numbers were measured on {this}: {here}."]
    lines = []
    total = len(metrics)
    for h, names in other.items():
        which = "every build" if len(names) == total else f"{len(names)} of {total} builds ({', '.join(names)})"
        where = h if h.startswith(UNRECORDED) else f"host {h}"
        lines.append(f"Latency and fidelity of {which} were measured on {where}, not on {this} ({here}).")
    remeasured = [n for n in metrics if n not in {b for names in other.values() for b in names}]
    if remeasured:
        lines.append(f"Measured on {this}: {', '.join(sorted(remeasured))}.")
    lines.append(
        f"To re-measure here, run `{REMEASURE}` (forces every evaluate stage, then rewrites the report); "
        f"for one build: `{force_one('BUILD')}`."
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print where the metrics in ``--metrics-dir`` were measured (what ``make build`` ends with)."""
    from pipeline.report.summary import load_metrics

    parser = argparse.ArgumentParser(prog="python -m pipeline.report.host", description=main.__doc__)
    parser.add_argument("--metrics-dir", default="metrics/builds")
    args = parser.parse_args(argv)
    if not Path(args.metrics_dir).is_dir():
        print(f"no measurements yet ({args.metrics_dir} does not exist)")
        return 0
    metrics = load_metrics(args.metrics_dir, required=False)
    lines = host_lines(metrics) or [f"no measurements yet (no metrics files in {args.metrics_dir})"]
    for line in lines:
        print(("warning: " if "not on this host" in line else "") + line)
    return 0


__all__ = ["REMEASURE", "REPORT_HOST", "elsewhere", "force_one", "host_lines", "hosts_of", "recorded_host"]


if __name__ == "__main__":
    sys.exit(main())
