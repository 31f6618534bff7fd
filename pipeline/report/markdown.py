"""``summary.md``: what to ship per model, one table per model with its task's fidelity figures and
each build's verdict, why each verdict, and which metrics each build's gates read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.evaluate.gates import GATES
from pipeline.evaluate.verdict import FAILED, FASTER
from pipeline.report.collect import Collected
from pipeline.report.summary import model_figures
from pipeline.report.verdicts import SLOWER_BELOW, Recommendation, recommend



def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _gates(r: Mapping[str, Any]) -> str:
    if r["gates_passed"] is None:
        return "–"
    if r["gates_passed"]:
        return "pass" if r["gates_checked"] else "none set"
    return "**FAIL**: " + _cell(r["gate_failures"] or "")


def _speedup(r: Mapping[str, Any]) -> str:
    if r["speedup"] is None:
        return "–"
    text = f"{r['speedup']:.2f}×"
    if r["speedup_low"] is not None and r["speedup_high"] is not None:
        text += f" ({r['speedup_low']:.2f}–{r['speedup_high']:.2f})"
    return text


def _target(r: Mapping[str, Any]) -> str:
    if r["target"] is None:
        return "–"
    if r["threads"] is None:
        return str(r["target"])
    if r["threads"] == 0:  # SessionParams.threads: 0 = ONNX Runtime's default (one per physical core)
        return f"{r['target']} (default threads)"
    return f"{r['target']} ({r['threads']} thread{'s' if r['threads'] != 1 else ''})"


def _evaluation(r: Mapping[str, Any]) -> str:
    """``runs/warm-up/batch`` of the latency measurement (``–`` without one)."""
    if r.get("runs") is None:
        return "–"
    return f"{r['runs']}/{_num(r.get('warmup'), 'd')}/{_num(r.get('batch_size'), 'd')}"


def _measured_as(r: Mapping[str, Any]) -> str:
    """``cpu, 2 threads, 100 runs + 10 warm-up at batch 1``: how a build was measured, in words."""
    threads = r["threads"]
    parts = [str(r["target"] or "unknown target")]
    if threads is not None:
        parts.append("default threads" if threads == 0 else f"{threads} thread{'s' if threads != 1 else ''}")
    if r.get("runs") is not None:
        parts.append(f"{r['runs']} runs + {_num(r.get('warmup'), 'd')} warm-up at batch {_num(r.get('batch_size'), 'd')}")
    return ", ".join(parts)


def _settings(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r["target"], r["threads"], r.get("runs"), r.get("warmup"), r.get("batch_size"))


def settings_note(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """A sentence when a model's measured builds ran with different targets, threads or evaluation
    settings: their speedups are then not comparable (a 1-thread quick build's 2.56× next to 1.85×)."""
    measured = [r for r in rows if r.get("p50_ms") is not None]
    if len({_settings(r) for r in measured}) < 2:
        return None
    groups: dict[tuple[Any, ...], list[str]] = {}
    for r in measured:
        groups.setdefault(_settings(r), []).append(f"`{r['build']}`")
    parts = [f"{_target(r)}, runs/warm-up/batch {_evaluation(r)}: {', '.join(groups[_settings(r)])}"
             for r in (next(x for x in measured if _settings(x) == key) for key in groups)]
    return ("**Not measured alike**: these builds ran with different targets, threads or evaluation settings, "
            "so their latencies and speedups are not directly comparable (" + "; ".join(parts) + ").")


def _verdict(r: Mapping[str, Any]) -> str:
    return f"**{r['verdict']}**" if r["verdict"] == FASTER else str(r["verdict"] or "–")


def figure_format(name: str) -> str:
    """Digits for a fidelity figure: cosines tell 0.9995 from 0.9999999; errors are magnitudes."""
    if "cosine" in name:
        return ".6f"
    return ".3g" if name.endswith("_max") else ".4f"


def _gate_kind(label: str) -> str | None:
    if label in GATES:
        return GATES[label][1]
    kind = label.split(".", 1)[0]
    return kind if kind in ("min", "max") else None


def gates_used(metrics: Mapping[str, Any]) -> str:
    """``gate → metric: value ≥ threshold, pass`` for every gate a build's metrics checked."""
    checked = (metrics.get("gates") or {}).get("checked") or {}
    if not checked:
        return "none set"
    parts = []
    for label, c in sorted(checked.items()):
        op = {"min": "≥", "max": "≤"}.get(_gate_kind(label) or "", "vs")
        value = "not measured" if c.get("value") is None else format(c["value"], ".6g")
        parts.append(f"`{label}` → `{c.get('metric')}`: {value} (needs {op} {c.get('threshold'):g}) "
                     f"{'pass' if c.get('passed') else '**FAIL**'}")
    return "; ".join(parts)


def _table(task: str | None, rows: Sequence[Mapping[str, Any]]) -> str:
    from tabulate import tabulate

    figures = model_figures(task, rows)
    accuracy = any(r["top1"] is not None for r in rows)
    headers = ["build", "quantization", "target", "runs/warm-up/batch", "p50 ms", "speedup (noise)", "size MB",
               *figures]
    if accuracy:
        headers += ["top-1", "acc. drop (pt)"]
    headers += ["gates", "verdict"]
    body = []
    for r in rows:
        line = [r["build"], r["quantization"] or "–", _target(r), _evaluation(r), _num(r["p50_ms"], ".3f"), _speedup(r),
                _num(r["size_mb"], ".3f"), *(_num(r.get(f), figure_format(f)) for f in figures)]
        if accuracy:
            line += [_num(r["top1"], ".4f"),
                     "–" if r["accuracy_drop"] is None else f"{100 * r['accuracy_drop']:+.2f}"]
        line += [_gates(r), _verdict(r)]
        body.append(line)
    align = ["left"] * 4 + ["right"] * (len(headers) - 6) + ["left"] * 2
    return tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align)


def _build_notes(r: Mapping[str, Any], report: Collected) -> list[str]:
    name = r["build"]
    lines = [f"- `{name}`: {_verdict(r)}: {_cell(r['verdict_reason'] or '')}"]
    m = report.metrics.get(name)
    if m is not None:
        lines.append(f"  - gates used: {gates_used(m)}")
        quantized = m.get("quantized_nodes")
        if quantized is not None and (m.get("build") or {}).get("quantization") != "none":
            total, inner = quantized.get("total", 0), quantized.get("in_subgraphs", 0)
            lines.append(
                f"  - quantized nodes: {total}" + (f" ({inner} inside If/Loop subgraphs)" if inner else "")
                if total > 0 else "  - quantized nodes: none: nothing was quantized, the artifact computes in float"
            )
        search = m.get("search")
        if search:
            n = len(search.get("candidates") or [])
            lines.append(f"  - chosen by a search among {n} candidates: `{search.get('chosen')}`: {search.get('reason')}")
        custom = m.get("custom")
        if custom:
            shown = ", ".join(f"{k} {v:.6g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in sorted(custom.items()))
            lines.append(f"  - custom metrics: {shown}")
    failure = report.failures.get(name)
    if failure is not None:
        log = "" if str(failure.log) in (r["verdict_reason"] or "") else f" (full log: `{failure.log}`)"
        lines.append(f"  - failed in the {failure.stage} stage{log}")
    if name in report.stale:
        lines.append("  - its metrics file predates this failure: the numbers of that earlier run are not shown")
    return lines


def _by_model(table: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in table:
        groups.setdefault(r["model"] or "–", []).append(r)
    return dict(sorted(groups.items()))


def recommendations(report: Collected) -> list[Recommendation]:
    """What to ship for each model of the report."""
    out = []
    for model, rows in _by_model(report.table).items():
        fp32 = {r["build"] for r in rows if _is_fp32(r, report)}
        out.append(recommend(model, rows, fp32))
    return out


def _is_fp32(r: Mapping[str, Any], report: Collected) -> bool:
    planned = report.planned.get(r["build"])
    if planned is not None:
        return planned.fp32
    from pipeline.report.project import FLOAT16_PASS, FP32_QUANTIZATION

    return r["quantization"] == FP32_QUANTIZATION and FLOAT16_PASS not in (r["passes"] or "").split("+")


def to_markdown(report: Collected, plot_name: str | None) -> str:
    table = report.table
    from pipeline.report.host import REPORT_HOST, host_lines

    lines = ["# Build report", ""]
    where = host_lines(report.metrics, this=REPORT_HOST)
    if where:
        lines += ["## Where these numbers come from", ""]
        lines += [f"**{line}**" if f"not on {REPORT_HOST}" in line else line for line in where]
        lines.append("Reading this on another machine (a clone, or a report DVC restored from a cache): "
                     "`python -m pipeline.report.host` says whether these numbers are from it.")
        lines.append("")
    lines += ["## What to ship", ""]
    by_name = {r["build"]: r for r in table}
    for rec in recommendations(report):
        if rec.build:
            r = by_name[rec.build]
            what = f"ship `{rec.build}` ({_measured_as(r)})"
        else:
            what = "nothing to ship"
        lines.append(f"- **{rec.model}**: {what}: {_cell(rec.why)}")
    for model, rows in _by_model(table).items():
        task = next((r["task"] for r in rows if r["task"]), None)
        lines += ["", f"## {model} ({task})" if task else f"## {model}", ""]
        lines.append(_table(task, rows))
        lines.append("")
        note = settings_note(rows)
        if note:
            lines += [note, ""]
        for r in rows:
            lines += _build_notes(r, report)
    lines += [
        "",
        "target: the execution target and its intra-op threads (default: ONNX Runtime's, one per physical "
        "core). runs/warm-up/batch: timed runs, untimed warm-up runs and batch size of the latency "
        "measurement (the build's `evaluate:` settings). "
        "p50: latency of single `session.run` calls at the build's batch size. speedup: the plain fp32 "
        "export's p50 divided by the build's p50, both measured in the same run on the same target "
        "(alternating blocks); in brackets the noise interval of the per-block ratios when measured. "
        "Fidelity columns: the task's per-sample worst case against the source framework's outputs "
        "(top1_agreement_min: the worst sample's share of positions whose argmax matches; "
        "embedding_cosine_min: cosine of pooled embeddings; iou_min: IoU of thresholded maps; "
        "abs_err_max / rel_err_max: the worst sample's error; cosine_min: raw outputs, for older metrics). "
        "acc. drop: source top-1 minus build top-1, in points (positive = worse). verdict: faster "
        "(gates pass and faster than the fp32 export beyond noise), not_faster, unchanged (nothing "
        "quantized or changed), fails_gates, failed (a stage crashed or the build was never built).",
    ]
    failed = [r for r in table if r["verdict"] == FAILED]
    if failed:
        lines += ["", "## Failed builds", ""]
        lines += [f"- `{r['build']}` ({r['model']}): {_cell(r['verdict_reason'] or '')}" for r in failed]
    slower = [r for r in table if r["speedup"] is not None and r["speedup"] < SLOWER_BELOW]
    if slower:  # never silently slower than the source: say it even when no gate asks
        lines += ["", "## Slower than the fp32 export", "",
                  f"Builds whose p50 is more than {100 * (1 - SLOWER_BELOW):.0f}% above their fp32 export's "
                  "(measured in the same run):", ""]
        lines += [f"- `{r['build']}`: {r['speedup']:.2f}× (p50 {_num(r['p50_ms'], '.3f')} ms)" for r in slower]
    if report.ignored:
        lines += ["", "## Not in the project", "",
                  "Metrics files of builds that params.yaml no longer declares (not reported): "
                  + ", ".join(f"`{n}`" for n in report.ignored)]
    if plot_name:
        lines += ["", "## Latency against fidelity and accuracy", "", f"![Pareto plot]({plot_name})"]
    lines += ["", "## Environment", ""]
    lines += _environment(report.metrics)
    return "\n".join(lines) + "\n"


def _environment(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not metrics:
        return ["- no build was measured"]
    seen: dict[str, list[str]] = {}
    for name, m in sorted(metrics.items()):
        env = m.get("environment") or {}
        cpu = (env.get("cpu") or {}).get("model", "unknown CPU")
        isa = ", ".join(k for k, v in sorted((env.get("isa") or {}).items()) if v) or "none recorded"
        versions = ", ".join(f"{k} {v}" for k, v in sorted((env.get("versions") or {}).items()))
        host = (env.get("host") or {}).get("id")
        key = f"{'host ' + host + '; ' if host else ''}{cpu} (ISA: {isa}); {versions}"
        seen.setdefault(key, []).append(name)
    if len(seen) == 1:
        return [f"- {next(iter(seen))}"]
    return [f"- {key}: {', '.join(names)}" for key, names in seen.items()]


__all__ = ["SLOWER_BELOW", "figure_format", "gates_used", "recommendations", "settings_note", "to_markdown"]
