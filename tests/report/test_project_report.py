"""The report over a composed project: every build listed, failed ones with the reason from the logs."""

from __future__ import annotations

import csv
import time

import pytest

from pipeline.errors import ConfigError
from pipeline.report import write_report
from pipeline.report.collect import collect
from pipeline.report.failures import NOT_BUILT

EXPORT_ERROR = "export stage, convert failed: Unsupported ONNX opset 99 for op Gather"


def _traceback_log(project, stage, item, stamp, exc_line):
    return project.log(stage, item, f"{stamp} INFO starting", f"{stamp} DEBUG Traceback (most recent call last):",
                       '  File "pipeline/stages/runner.py", line 112, in main_for', "    body(args, logger)", exc_line)


@pytest.fixture
def mixed(project, make_metrics):
    """Model cnn: fp32 and int8 built; int8_never has nothing at all. Model enc (embedding): its export
    failed (a log with the error, no metrics). Model det: its int8 build's metrics are older than
    its quantize stage's latest (failed) run."""
    project.model("cnn").model("enc", task="embedding").model("det", task="detection")
    project.build("cnn_fp32", "cnn").build("cnn_int8", "cnn", "static_int8").build("cnn_int8_never", "cnn", "static_int8")
    project.build("enc_int8", "enc", "dynamic_int8", threads=2)
    project.build("det_fp32", "det").build("det_int8", "det", "static_int8")
    project.metrics(make_metrics("cnn_fp32", "none", 1.0, 1.0, 0.98, model="cnn", interval=(0.97, 1.03)))
    project.metrics(make_metrics("cnn_int8", "static_int8", 0.5, 0.999, 0.98, model="cnn", interval=(1.9, 2.1)))
    project.metrics(make_metrics("det_fp32", "none", 1.0, 1.0, model="det", task="detection", figures={"iou_min": 1.0}))
    old = time.mktime((2026, 1, 1, 9, 0, 0, 0, 0, -1))
    project.metrics(make_metrics("det_int8", "static_int8", 0.5, 0.99, model="det", task="detection",
                                 figures={"iou_min": 0.9}), mtime=old)
    _traceback_log(project, "export", "enc", "2026-01-01 10:00:00,000", f"pipeline.errors.StageError: {EXPORT_ERROR}")
    project.log("prepare", "enc", "2026-01-01 09:59:00,000 DEBUG done in 1.00s")
    _traceback_log(project, "quantize", "det_int8", "2026-01-01 10:00:00,000", "MemoryError: calibration")
    # an evaluate run that wrote its metrics and then failed its gates is not a crash
    project.log("evaluate", "cnn_int8", "2000-01-01 00:00:00,000 INFO measuring",
                "2000-01-01 00:00:01,000 DEBUG Traceback (most recent call last):",
                "pipeline.errors.GateError: evaluate stage, gates failed for build cnn_int8: x")
    return project


def test_failed_export_is_listed_with_its_reason(mixed):
    report = collect(mixed.metrics_dir, mixed.params, mixed.logs)
    by_name = {r["build"]: r for r in report.table}
    assert sorted(by_name) == sorted(mixed.builds)  # every declared build, metrics or not
    enc = by_name["enc_int8"]
    assert enc["verdict"] == "failed"
    log = mixed.logs / "export" / "enc.log"
    assert enc["verdict_reason"] == f"the build failed: {EXPORT_ERROR} (full log: {log})"
    assert enc["model"] == "enc" and enc["task"] == "embedding" and enc["threads"] == 2 and enc["p50_ms"] is None
    assert report.failures["enc_int8"].stage == "export"
    never = by_name["cnn_int8_never"]
    assert never["verdict"] == "failed" and never["verdict_reason"] == NOT_BUILT
    stale = by_name["det_int8"]
    assert stale["verdict"] == "failed" and "MemoryError: calibration" in stale["verdict_reason"]
    assert stale["p50_ms"] is None and report.stale == ["det_int8"] and "det_int8" not in report.metrics
    # metrics written by the run whose evaluate failed its gates are current
    assert by_name["cnn_int8"]["verdict"] == "faster" and "cnn_int8" not in report.failures


def test_summary_and_csv_show_failed_builds(mixed, tmp_path):
    text = write_report(mixed.metrics_dir, tmp_path / "r", mixed.params, mixed.logs).read_text()
    enc_row = next(line for line in text.splitlines() if line.startswith("| enc_int8"))
    cells = [c.strip() for c in enc_row.strip("|").split("|")]
    assert cells[0] == "enc_int8" and cells[-1] == "failed" and cells[2] == "cpu (2 threads)"
    assert "embedding_cosine_min" in text.split("## enc (embedding)", 1)[1].split("##", 1)[0]
    failed = text.split("## Failed builds", 1)[1].split("\n## ", 1)[0]
    assert f"- `enc_int8` (enc): the build failed: {EXPORT_ERROR}" in failed
    assert f"- `cnn_int8_never` (cnn): {NOT_BUILT}" in failed
    assert "- `det_int8` (det): the build failed: quantize stage, det_int8 failed: MemoryError: calibration" in failed
    assert "  - failed in the export stage\n" in text
    assert "  - failed in the quantize stage\n" in text
    assert "its metrics file predates this failure" in text
    with open(tmp_path / "r" / "builds.csv") as fh:
        rows = {r["build"]: r for r in csv.DictReader(fh)}
    assert rows["enc_int8"]["verdict"] == "failed" and EXPORT_ERROR in rows["enc_int8"]["verdict_reason"]
    assert rows["enc_int8"]["p50_ms"] == ""
    assert rows["det_fp32"]["iou_min"] == "1.0" and rows["det_fp32"]["task"] == "detection"


def test_builds_not_in_the_project_are_named_not_reported(mixed, make_metrics, tmp_path):
    mixed.metrics(make_metrics("removed_build", "none", 1.0, 1.0, model="cnn"))
    report = collect(mixed.metrics_dir, mixed.params, mixed.logs)
    assert report.ignored == ["removed_build"] and "removed_build" not in {r["build"] for r in report.table}
    text = write_report(mixed.metrics_dir, tmp_path / "r", mixed.params, mixed.logs).read_text()
    assert "no longer declares (not reported): `removed_build`" in text


def test_project_with_no_metrics_at_all_still_reports(project, tmp_path):
    project.model("cnn").build("cnn_fp32", "cnn")
    text = write_report(project.metrics_dir, tmp_path / "r", project.params, project.logs).read_text()
    assert f"`cnn_fp32` (cnn): {NOT_BUILT}" in text and "- **cnn**: nothing to ship" in text
    assert (tmp_path / "r" / "pareto.png").is_file()


def test_bad_project_is_one_clear_error(project, tmp_path):
    project.model("cnn").build("b", "cnn")
    project.builds["b"]["model"] = "nope"
    project.build("c", "cnn")
    with pytest.raises(ConfigError, match=r"params.yaml, key 'builds.b.model': unknown model 'nope' \(valid choices: cnn\)"):
        write_report(project.metrics_dir, tmp_path / "r", project.params, project.logs)
    assert not (tmp_path / "r").exists()


def test_quantized_node_counts_are_said_plainly(project, make_metrics, tmp_path):
    project.model("vad", task="detection")
    project.build("vad_int8", "vad", "dynamic_int8").build("vad_static", "vad", "static_int8")
    with_sub = make_metrics("vad_int8", "dynamic_int8", 0.9, 0.99, model="vad", task="detection", figures={"iou_min": 0.97})
    with_sub["quantized_nodes"] = {"total": 16, "in_subgraphs": 16}
    nothing = make_metrics("vad_static", "static_int8", 1.0, 1.0, model="vad", task="detection", figures={"iou_min": 1.0})
    nothing["quantized_nodes"] = {"total": 0, "in_subgraphs": 0}
    project.metrics(with_sub)
    project.metrics(nothing)
    text = write_report(project.metrics_dir, tmp_path / "r", project.params, project.logs).read_text()
    assert "  - quantized nodes: 16 (16 inside If/Loop subgraphs)\n" in text
    assert "  - quantized nodes: none: nothing was quantized, the artifact computes in float\n" in text
