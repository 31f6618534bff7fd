"""Reading why a build failed from the stage logs the runner writes."""

from __future__ import annotations

import time

import pytest

from pipeline.errors import ConfigError, StageError
from pipeline.report.failures import find_failure, log_failure, run_started, stage_logs
from pipeline.stages import runner


def _run_stage(monkeypatch, tmp_path, capsys, stage, item, exc):
    """Run ``main_for`` as a stage entry point does, logging under tmp_path/logs; returns
    (exit code, the printed error line without ``error: ``, the log path)."""
    monkeypatch.setattr(runner, "LOG_ROOT", tmp_path / "logs")

    def configure(parser):
        parser.add_argument("--model")

    def body(args, log):
        log.info("working on %s", args.model)
        if exc is not None:
            raise exc

    code = runner.main_for(stage, configure, body, item_arg="model", argv=["--model", item])
    err = capsys.readouterr().err
    printed = [line for line in err.splitlines() if line.startswith("error: ")]
    return code, (printed[0][len("error: "):] if printed else None), tmp_path / "logs" / stage / f"{item}.log"


@pytest.mark.parametrize(
    "exc",
    [
        StageError("export", "verify", "outputs differ: max abs err 0.5 > atol 0.0001"),
        ValueError("shape mismatch in node Conv_3"),
        ConfigError("unknown quantizer 'int3'", key="builds.b.quantization.name", source="params.yaml",
                    choices=["none", "static_int8"]),
    ],
    ids=["stage-error", "unexpected", "config-error"],
)
def test_reason_is_the_line_the_stage_printed(monkeypatch, tmp_path, capsys, exc):
    code, printed, log = _run_stage(monkeypatch, tmp_path, capsys, "export", "digits", exc)
    assert code == 1 and printed
    assert "error:" not in log.read_text()  # the runner logs the traceback, not the printed line
    assert log_failure(log, "export", "digits") == printed


def test_successful_run_is_no_failure(monkeypatch, tmp_path, capsys):
    code, printed, log = _run_stage(monkeypatch, tmp_path, capsys, "export", "digits", None)
    assert code == 0 and printed is None
    assert log_failure(log, "export", "digits") is None


def test_explicit_error_line_and_unfinished_run(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("2026-01-01 10:00:00,000 INFO start\n2026-01-01 10:00:01,000 ERROR error: quantize stage, "
                   "calibrate failed: out of memory budget (set calibration.num_samples)\n")
    assert log_failure(log, "quantize", "b") == "quantize stage, calibrate failed: out of memory budget (set calibration.num_samples)"
    log.write_text("2026-01-01 10:00:00,000 INFO calibrating 256 samples\n")  # killed mid-run
    reason = log_failure(log, "quantize", "b")
    assert reason.startswith("quantize stage did not finish") and str(log) in reason
    # a run that survived an error it logged and finished is not a failure
    log.write_text("2026-01-01 10:00:00,000 ERROR custom metric m.f raised\n2026-01-01 10:00:02,000 DEBUG done in 2.00s\n")
    assert log_failure(log, "evaluate", "b") is None
    # a message that merely starts like the runner's last one is not the end of the run
    log.write_text("2026-01-01 10:00:00,000 INFO done in 1 step: calibration\n2026-01-01 10:00:01,000 INFO quantizing\n")
    assert log_failure(log, "quantize", "b").startswith("quantize stage did not finish")


def test_first_failed_stage_of_the_chain(tmp_path):
    logs = tmp_path / "logs"
    assert [(s, i) for s, i, _ in stage_logs(logs, "b", "m")] == [
        ("prepare", "m"), ("export", "m"), ("passes", "b"), ("quantize", "b"), ("evaluate", "b")]
    assert find_failure(logs, "b", "m") is None
    for stage, item, text in [
        ("prepare", "m", "2026-01-01 10:00:00,000 DEBUG done in 1.00s"),
        ("export", "m", "2026-01-02 09:30:00,250 DEBUG Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                        "pipeline.errors.StageError: export stage, convert failed: opset 99 unsupported"),
        ("quantize", "b", "2026-01-01 10:00:00,000 DEBUG Traceback (most recent call last):\n"
                          "RuntimeError: old failure"),
    ]:
        (logs / stage).mkdir(parents=True, exist_ok=True)
        (logs / stage / f"{item}.log").write_text(text + "\n")
    failure = find_failure(logs, "b", "m")
    assert failure.stage == "export" and failure.log == logs / "export" / "m.log"
    assert failure.reason == f"export stage, convert failed: opset 99 unsupported (full log: {logs / 'export' / 'm.log'})"
    assert failure.started == time.mktime((2026, 1, 2, 9, 30, 0, 0, 0, -1)) + 0.25


def test_run_start_without_timestamp_is_the_mtime(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("no timestamp here\n")
    assert run_started(log) == log.stat().st_mtime
