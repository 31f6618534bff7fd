"""The report stage as DVC runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

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


def _params(root: Path, *builds: str) -> None:
    models = {"m": {"framework": "onnx", "path": "m.onnx", "watch": "m.onnx", "task": "classification"}}
    spec = {"model": "m", "passes": [], "quantization": {"name": "none"}, "target": {"name": "cpu"}}
    (root / "params.yaml").write_text(yaml.safe_dump({"models": models, "builds": {b: spec for b in builds}}))


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ONNXBUILD_LOG_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.stages.report", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120,
    )


def test_report_stage_writes_all_outputs(tmp_path):
    d = tmp_path / "metrics" / "builds"
    d.mkdir(parents=True)
    for name, p50, cos in [("a_fp32", 1.0, 1.0), ("b_int8", 0.4, 0.998), ("c_fp16", 0.8, 0.9999)]:
        (d / f"{name}.json").write_text(json.dumps(_metrics(name, p50, cos)))
    _params(tmp_path, "a_fp32", "b_int8", "c_fp16", "d_broken")
    log = tmp_path / "logs" / "quantize" / "d_broken.log"
    log.parent.mkdir(parents=True)
    log.write_text("2026-01-01 10:00:00,000 DEBUG Traceback (most recent call last):\n"
                   "pipeline.errors.StageError: quantize stage, calibrate failed: 3 samples < 32\n")
    # --params and --logs default to params.yaml and logs
    proc = _run(tmp_path, "--metrics-dir", "metrics/builds", "--out", "reports")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "reports"
    assert sorted(p.name for p in out.iterdir()) == ["builds.csv", "pareto.png", "summary.md"]
    summary = (out / "summary.md").read_text()
    for name in ("a_fp32", "b_int8", "c_fp16", "d_broken"):
        assert f"| {name}" in summary
    assert "- `d_broken` (m): the build failed: quantize stage, calibrate failed: 3 samples < 32 (full log: logs/quantize/d_broken.log)" in summary
    # other paths, named
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "params.yaml").rename(tmp_path / "elsewhere" / "p.yaml")
    proc = _run(tmp_path, "--params", "elsewhere/p.yaml", "--logs", "nowhere", "--metrics-dir", "metrics/builds",
                "--out", "reports2")
    assert proc.returncode == 0, proc.stderr
    assert "- `d_broken` (m): not built: no metrics and no error log" in (tmp_path / "reports2" / "summary.md").read_text()


def test_report_stage_without_params_fails_in_one_line(tmp_path):
    proc = _run(tmp_path, "--metrics-dir", "metrics/builds", "--out", "reports")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: params.yaml: not found: compose the recipes first (`onnxbuild compose`)"
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "reports").exists()


def test_report_stage_without_metrics_lists_every_build_as_not_built(tmp_path):
    _params(tmp_path, "a_fp32")
    proc = _run(tmp_path, "--metrics-dir", "metrics/builds", "--out", "reports")
    assert proc.returncode == 0, proc.stderr
    assert "- `a_fp32` (m): not built: no metrics and no error log" in (tmp_path / "reports" / "summary.md").read_text()


def test_report_stage_imports_no_framework():
    code = (
        "import sys, pipeline.stages.report, pipeline.report, pipeline.report.summary, pipeline.report.pareto, "
        "pipeline.report.collect, pipeline.report.markdown, pipeline.report.failures, pipeline.report.verdicts; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
