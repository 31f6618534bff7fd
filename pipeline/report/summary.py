"""Collect per-build metrics files into flat rows; render them as Markdown and CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from pipeline.errors import StageError
from pipeline.evaluate.gates import metric_value

# CSV columns, in order (one row per build; empty when a build has no such value)
COLUMNS = (
    "build",
    "model",
    "quantization",
    "passes",
    "target",
    "threads",
    "batch_size",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "throughput_per_s",
    "reference_p50_ms",
    "speedup",
    "size_mb",
    "num_nodes",
    "cosine_min",
    "max_abs_err",
    "mean_abs_err",
    "top1_agreement",
    "top1",
    "source_top1",
    "accuracy_drop",
    "gates_passed",
    "gate_failures",
    "gates_checked",
)


def load_metrics(metrics_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{build name: metrics}`` from ``metrics_dir/*.json``, sorted by name."""
    metrics_dir = Path(metrics_dir)
    files = sorted(metrics_dir.glob("*.json")) if metrics_dir.is_dir() else []
    if not files:
        raise StageError("report", "metrics", f"no metrics files (*.json) in {metrics_dir}: run the evaluate stages first")
    out = {}
    for path in files:
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise StageError("report", "metrics", f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or "latency_ms" not in data:
            raise StageError("report", "metrics", f"{path} is not a build metrics file (no latency_ms)")
        out[path.stem] = data
    return out


def row(name: str, m: dict[str, Any]) -> dict[str, Any]:
    """One flat row of a build's metrics (keys: COLUMNS)."""
    build = m.get("build") or {}
    gates = m.get("gates") or {}
    values = {
        "build": name,
        "model": build.get("model"),
        "quantization": build.get("quantization"),
        "passes": "+".join(build.get("passes") or []) or None,
        "target": build.get("target"),
        "threads": metric_value(m, "environment.threads.intra_op"),
        "batch_size": metric_value(m, "benchmark.batch_size"),
        "p50_ms": metric_value(m, "latency_ms.p50"),
        "p90_ms": metric_value(m, "latency_ms.p90"),
        "p99_ms": metric_value(m, "latency_ms.p99"),
        "mean_ms": metric_value(m, "latency_ms.mean"),
        "std_ms": metric_value(m, "latency_ms.std"),
        "throughput_per_s": m.get("throughput_per_s"),
        "reference_p50_ms": metric_value(m, "reference.latency_ms.p50"),
        "speedup": m.get("speedup"),
        "size_mb": m.get("model_size_mb"),
        "num_nodes": m.get("num_nodes"),
        "cosine_min": metric_value(m, "fidelity.cosine_min"),
        "max_abs_err": metric_value(m, "fidelity.max_abs_err"),
        "mean_abs_err": metric_value(m, "fidelity.mean_abs_err"),
        "top1_agreement": metric_value(m, "fidelity.top1_agreement"),
        "top1": metric_value(m, "accuracy.top1"),
        "source_top1": metric_value(m, "accuracy.source_top1"),
        "accuracy_drop": metric_value(m, "accuracy.drop"),
        "gates_passed": gates.get("passed"),
        "gate_failures": "; ".join(gates.get("failures") or []) or None,
        "gates_checked": ",".join(sorted(gates.get("checked") or {})) or None,
    }
    return {col: values[col] for col in COLUMNS}


def rows(metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [row(name, m) for name, m in sorted(metrics.items())]


def to_csv(table: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in table:
        writer.writerow({k: _csv_value(v) for k, v in r.items()})
    return buf.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return float(f"{value:.7g}")  # measurement noise is far above 7 digits
    return value


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _gates(r: dict[str, Any]) -> str:
    if r["gates_passed"] is None:
        return "–"
    if r["gates_passed"]:
        return "pass" if r["gates_checked"] else "none set"
    return "**FAIL**: " + (r["gate_failures"] or "").replace("|", "\\|")


# speedup below this is reported as slower (equal-speed builds measure 0.98-1.02 on a quiet machine)
SLOWER_BELOW = 0.95


def to_markdown(table: list[dict[str, Any]], metrics: dict[str, dict[str, Any]], plot_name: str | None) -> str:
    from tabulate import tabulate

    headers = ["build", "model", "quantization", "p50 ms", "p90 ms", "p99 ms", "speedup", "size MB",
               "cosine_min", "top-1", "acc. drop (pt)", "gates"]
    body = [
        [
            r["build"],
            r["model"] or "–",
            r["quantization"] or "–",
            _num(r["p50_ms"], ".3f"),
            _num(r["p90_ms"], ".3f"),
            _num(r["p99_ms"], ".3f"),
            "–" if r["speedup"] is None else f"{r['speedup']:.2f}×",
            _num(r["size_mb"], ".3f"),
            _num(r["cosine_min"], ".6f"),
            _num(r["top1"], ".4f"),
            "–" if r["accuracy_drop"] is None else f"{100 * r['accuracy_drop']:+.2f}",
            _gates(r),
        ]
        for r in table
    ]
    lines = ["# Build report", ""]
    align = ["left"] * 3 + ["right"] * 8 + ["left"]
    lines.append(tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align))
    lines += [
        "",
        "p50/p90/p99: latency percentiles of single `session.run` calls at the build's batch size. "
        "speedup: the plain fp32 export's p50 divided by the build's p50, both measured in the same run "
        "on the same target (alternating blocks). cosine_min: the lowest per-sample cosine similarity "
        "against the source framework's outputs. acc. drop: source top-1 minus build top-1, in points "
        "(positive = worse).",
    ]
    slower = [r for r in table if r["speedup"] is not None and r["speedup"] < SLOWER_BELOW]
    if slower:  # never silently slower than the source: say it even when no gate asks
        lines += ["", "## Slower than the fp32 export", "",
                  f"Builds whose p50 is more than {100 * (1 - SLOWER_BELOW):.0f}% above their fp32 export's "
                  "(measured in the same run):", ""]
        lines += [
            f"- `{r['build']}`: {r['speedup']:.2f}× (p50 {_num(r['p50_ms'], '.3f')} ms)" for r in slower
        ]
    failed = [r for r in table if r["gates_passed"] is False]
    if failed:
        lines += ["", "## Failed gates", ""]
        lines += [f"- `{r['build']}`: {r['gate_failures']}" for r in failed]
    if plot_name:
        lines += ["", "## Latency against fidelity and accuracy", "", f"![Pareto plot]({plot_name})"]
    lines += ["", "## Environment", ""]
    lines += _environment(metrics)
    return "\n".join(lines) + "\n"


def _environment(metrics: dict[str, dict[str, Any]]) -> list[str]:
    seen: dict[str, list[str]] = {}
    for name, m in sorted(metrics.items()):
        env = m.get("environment") or {}
        cpu = (env.get("cpu") or {}).get("model", "unknown CPU")
        isa = ", ".join(k for k, v in sorted((env.get("isa") or {}).items()) if v) or "none recorded"
        versions = ", ".join(f"{k} {v}" for k, v in sorted((env.get("versions") or {}).items()))
        key = f"{cpu} (ISA: {isa}); {versions}"
        seen.setdefault(key, []).append(name)
    if len(seen) == 1:
        return [f"- {next(iter(seen))}"]
    return [f"- {key}: {', '.join(names)}" for key, names in seen.items()]
