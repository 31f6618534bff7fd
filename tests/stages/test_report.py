"""The report stage as DVC runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _metrics(name: str, p50: float, cosine: float) -> dict:
    return {
        "build": {"name": name, "model": "m", "quantization": "none", "passes": [], "target": "cpu"},
        "latency_ms": {k: p50 for k in ("mean", "std", "min", "p50", "p90", "p99", "max")},
        "speedup": 1.0 / p50,
        "model_size_mb": 0.5,
        "fidelity": {"cosine_min": cosine, "max_abs_err": 0.01, "mean_abs_err": 0.001},
        "accuracy": {"top1": 0.9, "source_top1": 0.91, "drop": 0.01},
        "gates": {"passed": True, "failures": [], "checked": {}},
    }


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.stages.report", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120,
    )


def test_report_stage_writes_all_outputs(tmp_path):
    d = tmp_path / "metrics" / "builds"
    d.mkdir(parents=True)
    for name, p50, cos in [("a_fp32", 1.0, 1.0), ("b_int8", 0.4, 0.998), ("c_fp16", 0.8, 0.9999)]:
        (d / f"{name}.json").write_text(json.dumps(_metrics(name, p50, cos)))
    proc = _run(tmp_path, "--metrics-dir", "metrics/builds", "--out", "reports")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "reports"
    assert sorted(p.name for p in out.iterdir()) == ["builds.csv", "pareto.png", "summary.md"]
    summary = (out / "summary.md").read_text()
    for name in ("a_fp32", "b_int8", "c_fp16"):
        assert f"| {name}" in summary


def test_report_stage_without_metrics_fails_in_one_line(tmp_path):
    proc = _run(tmp_path, "--metrics-dir", "metrics/builds", "--out", "reports")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: report stage, metrics failed: no metrics files")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "reports").exists()


def test_report_stage_imports_no_framework():
    code = (
        "import sys, pipeline.stages.report, pipeline.report, pipeline.report.summary, pipeline.report.pareto; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
