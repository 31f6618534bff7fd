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


# --- Recipes are code: the stages enforce the project's allowlist on params.yaml itself ---------

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from tests.reliability.tiny import env_for, make_project  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _stage(root, stage, *args):
    env = {**env_for(root), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", f"pipeline.stages.{stage}", "--params", "params.yaml", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_a_hand_edited_params_file_runs_no_target_outside_the_allowlist(tmp_path):
    """compose refuses `_target_: os.system`; an edit of params.yaml after compose must not get it run."""
    root = make_project(tmp_path)
    assert subprocess.run([sys.executable, "-m", "pipeline.compose"], cwd=root, env={**env_for(root), "PYTHONPATH": str(ROOT)},
                          capture_output=True).returncode == 0
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["models"]["tiny"]["reference"]["dataset"] = {"_target_": "os.system", "command": "touch pwned"}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert _stage(root, "prepare", "--model", "tiny", "--out", "artifacts/models/tiny/source",
                  "--metrics", "metrics/models/tiny.json").returncode == 1
    proc = _stage(root, "export", "--model", "tiny", "--source", "artifacts/models/tiny/source",
                  "--out", "artifacts/models/tiny/export")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "models.tiny.reference.dataset._target_" in lines[0] and "'os.system'" in lines[0]
    assert "valid choices: pipeline" in lines[0]
    assert not (root / "pwned").exists()


def test_stage_checks_names_targets_and_paths_of_its_own_section(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    model = {"framework": "onnx", "path": "/etc/passwd", "watch": "models/tiny.onnx"}
    with pytest.raises(ConfigError, match=r"models.m.path.*outside the project folder"):
        runner.model_spec({"models": {"m": model}}, "m")
    with pytest.raises(ConfigError, match="model name"):
        runner.model_spec({"models": {"a b": model}}, "a b")
    build = {"model": "m", "quantization": {"name": "none"}, "target": {"name": "cpu"},
             "evaluate": {"metrics": [{"_target_": "builtins.exec", "provides": ["x"]}]}}
    with pytest.raises(ConfigError, match=r"builds.b.evaluate.metrics\[0\]._target_.*'builtins.exec'"):
        runner.build_spec({"builds": {"b": build}, "models": {"m": model}}, "b")


def test_params_with_a_duplicate_key_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("models: {}\nbuilds: {}\nmodels: {}\n")
    with pytest.raises(ConfigError, match=r"params.yaml:3: duplicate key 'models'"):
        runner.load_params(tmp_path / "params.yaml")


# --- a stage dies with its parent and cleans what a killed run left ----------------------------

import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

STAGE_SCRIPT = """
import sys, time
from pathlib import Path
from pipeline.fsutil import atomic_dir
from pipeline.stages import runner
runner.LOG_ROOT = Path(sys.argv[1]) / "logs"

def configure(parser):
    parser.add_argument("--out", required=True)

def body(args, log):
    with atomic_dir(args.out) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        print("writing", flush=True)
        time.sleep(60)

sys.argv = sys.argv[:1] + sys.argv[2:]
sys.exit(runner.main_for("demo", configure, body))
"""


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap it if it is our child (it is not: it is the parent's)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return False


def test_a_stage_dies_with_its_parent_and_removes_its_temporary_folder(tmp_path):
    """A `dvc repro` killed with SIGKILL left its stage running, which rewrote an output later."""
    script = tmp_path / "stage.py"
    script.write_text(STAGE_SCRIPT)
    parent_code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, {str(script)!r}, {str(tmp_path)!r}, '--out', {str(tmp_path / 'out')!r}],"
        " stdout=subprocess.PIPE, text=True)\n"
        "print(p.pid, flush=True)\n"
        "print(p.stdout.readline().strip(), flush=True)\n"
        "p.wait()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "writing"
    assert list(tmp_path.glob(".out.tmp-*"))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        assert _wait_gone(child, 10), "the stage outlived its killed parent"
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not list(tmp_path.glob(".out.tmp-*")) and not (tmp_path / "out").exists()


def test_a_stage_removes_temporary_folders_a_killed_run_left(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "LOG_ROOT", tmp_path / "logs")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.tmp-{dead.pid}-abc"
    stale.mkdir()
    (tmp_path / ".model.tmp-oldstyle").mkdir()

    def configure(parser):
        parser.add_argument("--out")

    assert runner.main_for("demo", configure, lambda args, log: None, None, ["--out", str(tmp_path / "model")]) == 0
    assert not stale.exists() and not (tmp_path / ".model.tmp-oldstyle").exists()
    assert "left by a run that was killed" in (tmp_path / "logs" / "demo" / "demo.log").read_text()


def test_an_unavailable_execution_provider_fails_the_builds_first_stage(tmp_path, monkeypatch):
    """`dvc exp run -S builds.X.target.name=cuda` skips compose's check: the passes stage (the build's
    first) names the installed providers and the package, before passes and quantization run."""
    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    model = {"framework": "onnx", "path": "models/tiny.onnx", "watch": "models/tiny.onnx"}
    build = {"model": "m", "quantization": {"name": "none"}, "target": {"name": "cuda"}}
    with pytest.raises(ConfigError) as info:
        runner.build_spec({"builds": {"b": build}, "models": {"m": model}}, "b")
    assert "builds.b.target.name" in str(info.value) and "installed providers: " in str(info.value)
    assert "onnxruntime-gpu" in str(info.value)
