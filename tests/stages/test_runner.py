import pytest

from pipeline.errors import ConfigError, StageError
from pipeline.stages import runner


def _body_raising(exc):
    def body(args, log):
        log.info("working")
        raise exc

    return body


def _configure(parser):
    parser.add_argument("--item", default="x")


def test_stage_error_prints_one_line_and_logs_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "LOG_ROOT", tmp_path / "logs")
    code = runner.main_for("demo", _configure, _body_raising(ValueError("bad things\nmore detail")), "item", [])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"error: demo stage, x failed: ValueError: bad things (full log: {tmp_path / 'logs' / 'demo' / 'x.log'})"
    )
    log = (tmp_path / "logs" / "demo" / "x.log").read_text()
    assert "Traceback" in log and "more detail" in log


def test_config_error_is_passed_through(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "LOG_ROOT", tmp_path / "logs")
    exc = ConfigError("unknown thing", key="builds.b.x", source="params.yaml", choices=["a", "b"])
    assert runner.main_for("demo", _configure, _body_raising(exc), "item", []) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: params.yaml, key 'builds.b.x': unknown thing (valid choices: a, b)"
    )


def test_stage_error_gets_log_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "LOG_ROOT", tmp_path / "logs")
    exc = StageError("passes", "onnxoptimizer (pass 2 of 3)", "boom")
    assert runner.main_for("passes", _configure, _body_raising(exc), "item", []) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: passes stage, onnxoptimizer (pass 2 of 3) failed: boom (full log: ")


def test_success_returns_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "LOG_ROOT", tmp_path / "logs")
    assert runner.main_for("demo", _configure, lambda a, log: None, "item", []) == 0


def test_missing_params_file_names_the_command(tmp_path):
    with pytest.raises(ConfigError, match="onnxbuild compose"):
        runner.load_params(tmp_path / "params.yaml")


def test_unknown_model_and_build_list_choices():
    params = {"models": {"a": {}}, "builds": {"x": {}}}
    with pytest.raises(ConfigError) as info:
        runner.model_spec(params, "b")
    assert info.value.choices == ["a"]
    with pytest.raises(ConfigError) as info:
        runner.build_spec(params, "y")
    assert info.value.choices == ["x"]


def test_stage_commands_run_with_a_pinned_hash_seed(tmp_path):
    """Converters iterate sets of names; a stage command re-runs itself with PYTHONHASHSEED=0 so the
    same recipe gives the same artifact bytes whatever the caller's environment."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "probe_stage.py").write_text(
        "import os\n"
        "from pipeline.stages.runner import main_for\n"
        "def body(args, log):\n"
        "    print(os.environ.get('PYTHONHASHSEED'), hash('onnxbuild'))\n"
        "raise SystemExit(main_for('probe', lambda p: None, body))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    env.update(PYTHONPATH=str(root), ONNXBUILD_LOG_DIR=str(tmp_path / "logs"))
    outs = [
        subprocess.run([sys.executable, "-m", "probe_stage"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, check=True).stdout.split()
        for _ in range(2)
    ]
    assert outs[0][0] == "0" and outs[0] == outs[1]
