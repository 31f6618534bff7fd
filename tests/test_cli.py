"""The onnxbuild command on the fixture project: compose, check, list, promote (error paths; the happy
promote path runs in tests/e2e), verdicts. `new` is tested in tests/test_scaffold.py."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def ws(tmp_path, monkeypatch, copy_fixture):
    """The fixture project (tests/fixtures/project) with the framework's dvc.yaml, as the working folder."""
    copy_fixture(tmp_path)
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # main() puts the project root on it
    yield tmp_path
    GlobalHydra.instance().clear()


def test_compose_then_check(ws, capsys):
    assert main(["compose", "--out", "params.yaml", "builds.cnn_fp32.target.threads=1"]) == 0
    assert "threads: 1" in (ws / "params.yaml").read_text()
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "fresh" in out and "onnxbuild check: ok" in out


def test_compose_error_exit_code_and_one_line(ws, capsys):
    assert main(["compose", "quantization=nonexistent"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (ws / "params.yaml").exists()


def test_check_without_params(ws, capsys):
    assert main(["check"]) == 1
    assert "onnxbuild compose" in capsys.readouterr().err


def test_list_shows_groups_options_and_builds(ws, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "quantization/" in out and "static_int8_qoperator" in out
    assert "cnn_static_int8" in out and "conf/recipe/cnn_static_int8.yaml" in out


def test_promote_rejects_a_folder_that_is_not_a_sweep_job(ws, capsys):
    assert main(["promote", str(ws), "--name", "x"]) == 1
    assert "not a sweep job folder" in capsys.readouterr().err


def test_promote_rejects_a_bad_name(ws, capsys):
    assert main(["promote", str(ws), "--name", "bad-name"]) == 1
    assert "bad build name" in capsys.readouterr().err


def test_unknown_arguments_are_refused(ws):
    with pytest.raises(SystemExit):
        main(["list", "--bogus"])


def test_verdicts_lists_every_build_and_fails_naming_the_bad_ones(tmp_path, capsys):
    import json

    import yaml

    from pipeline.cli import main

    build = {"model": "m", "quantization": {"name": "none"}, "target": {"name": "cpu", "threads": 1}, "passes": []}
    params = {"models": {"m": {"framework": "onnx", "task": "classification"}},
              "builds": {"good": build, "gated": build, "crashed": build}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name, verdict in (("good", "faster"), ("gated", "fails_gates")):
        (metrics / f"{name}.json").write_text(json.dumps({
            "build": {"name": name, "model": "m", "task": "classification", "quantization": "none"},
            "verdict": verdict, "verdict_reason": f"{name} reason", "speedup": 1.0, "latency_ms": {"p50": 1.0},
            "gates": {"passed": verdict != "fails_gates", "failures": [], "checked": {}},
        }))
    rc = main(["verdicts", "--params", str(tmp_path / "params.yaml"), "--metrics-dir", str(metrics),
               "--logs", str(tmp_path / "logs")])
    out, err = capsys.readouterr()
    assert rc == 1, err
    assert all(name in out for name in ("good", "gated", "crashed")), (out, err)
    assert "gated: fails_gates: gated reason" in err
    assert "crashed: failed" in err
    assert "good" not in err
