"""The report in a real DVC project (a temporary copy of the fixture project, one small MLP, two
builds): `dvc plots show --json` labels each point with its build; the Makefile's `remeasure` recipe
re-runs only the evaluate stages and the report, after which the report says the numbers are from here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.evaluate.environment import host

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
# Two builds of the fixture MLP (test-sized evaluation).
defaults:
  - model@models.tiny_mlp: tiny_mlp
  - recipe@builds.mlp_fp32: mlp_fp32
  - recipe@builds.mlp_1thread: mlp_fp32
  - _self_
builds:
  mlp_1thread:
    target: {threads: 1}
"""
OTHER = "elsewhere (Other CPU, 64 cores)"


def _run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "DVC_NO_ANALYTICS": "1", "ONNXBUILD_LOG_DIR": str(cwd / "logs")}
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _ran(proc: subprocess.CompletedProcess) -> set[str]:
    return {line.split("'")[1] for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Running stage '")}


def _readme_exp_show() -> list[list[str]]:
    """The `dvc exp show` recipes of the README's "Reading experiments" (argument lists)."""
    import shlex

    text = (ROOT / "README.md").read_text().split("**Reading experiments.**", 1)[1].split("**Deployment package.**")[0]
    return [shlex.split(line) for line in text.splitlines() if line.startswith("dvc exp show ")]


def _remeasure_commands() -> list[str]:
    """The dvc commands of the Makefile's remeasure recipe, as make expands them."""
    text = subprocess.run(["make", "-n", "-s", "remeasure"], cwd=ROOT, capture_output=True, text=True,
                          check=True, env={**os.environ, "MAKEFLAGS": ""}).stdout
    cmds = []
    for line in text.replace("\\\n", "\n").splitlines():
        for part in line.split(";"):
            part = part.strip().removeprefix("status=0").strip()
            part = part.split("||")[0].strip()
            if part.startswith("dvc repro"):
                cmds.append(part)
    return cmds


@pytest.mark.slow
def test_plots_label_builds_and_remeasure_reruns_only_evaluate(tmp_path, copy_fixture, bench_lock):
    repo = copy_fixture(tmp_path / "p", framework=True, dvc=True)
    (repo / "conf" / "config.yaml").write_text(CONFIG)
    shutil.copy2(ROOT / ".gitignore", repo / ".gitignore")
    _run(repo, "git", "init", "-q")
    _run(repo, sys.executable, "-m", "dvc", "init", "-q", "-f")
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    _run(repo, sys.executable, "-m", "pipeline.cli", "compose")
    _run(repo, sys.executable, "-m", "dvc", "repro")

    # dvc plots: every point carries its build name (tooltip and text label)
    shown = json.loads(_run(repo, sys.executable, "-m", "dvc", "plots", "show", "--json").stdout)
    spec = shown["data"]["Latency vs fidelity"][0]["content"]
    assert {v["build"] for v in spec["data"]["values"]} == {"mlp_fp32", "mlp_1thread"}
    points, labels = spec["layer"]
    assert points["encoding"]["tooltip"][0]["field"] == "build"
    assert {"field": "p50_ms"} in points["encoding"]["tooltip"]
    assert labels["mark"]["type"] == "text" and labels["encoding"]["text"] == {"field": "build"}
    assert spec["encoding"]["x"]["field"] == "p50_ms" and spec["encoding"]["y"]["field"] == "cosine_min"

    # numbers from another host: the report, and the make-build line, say so
    for name in ("mlp_fp32", "mlp_1thread"):
        path = repo / "metrics" / "builds" / f"{name}.json"
        m = json.loads(path.read_text())
        assert m["environment"]["host"] == host()
        m["environment"]["host"]["id"] = OTHER
        path.write_text(json.dumps(m))
    _run(repo, sys.executable, "-m", "pipeline.stages.report", "--metrics-dir", "metrics/builds", "--out", "reports")
    assert f"measured on host {OTHER}, not on the host that wrote this report" in (repo / "reports" / "summary.md").read_text()
    line = _run(repo, sys.executable, "-m", "pipeline.report.host").stdout
    assert line.startswith(f"warning: Latency and fidelity of every build were measured on host {OTHER}")

    # the Makefile's remeasure recipe: only evaluate@* and the report run, and the numbers are from here
    cmds = _remeasure_commands()
    assert len(cmds) == 3, cmds
    ran: set[str] = set()
    for cmd in cmds:
        ran |= _ran(_run(repo, sys.executable, "-m", *cmd.split()))
    assert ran == {"evaluate@mlp_fp32", "evaluate@mlp_1thread", "report"}
    text = (repo / "reports" / "summary.md").read_text()
    assert f"All numbers were measured on the host that wrote this report: {host()['id']}." in text
    assert json.loads((repo / "metrics" / "summary" / "mlp_fp32.json").read_text())["host"] == host()["id"]

    # the README's `dvc exp show` recipes print a narrow table: a few columns, nothing cut off
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    _run(repo, "git", "add", "-A")
    _run(repo, *git, "commit", "-q", "-m", "baseline")
    _run(repo, sys.executable, "-m", "dvc", "exp", "run", "-n", "two-threads", "-S", "builds.mlp_1thread.target.threads=2")
    recipes = _readme_exp_show()
    assert len(recipes) == 2, recipes
    wide = _run(repo, sys.executable, "-m", "dvc", "exp", "show", "--no-pager", "--csv").stdout.splitlines()[0]
    assert len(wide.split(",")) > 60  # what the recipes narrow down
    for argv in recipes:
        argv = [a.replace("cnn_static_int8", "mlp_1thread") for a in argv]
        shown = _run(repo, sys.executable, "-m", *argv, "--no-pager", "--csv").stdout.splitlines()
        header = shown[0].split(",")
        assert "Experiment" in header and len(header) <= 6, header
        assert any(h.endswith(":speedup") for h in header)
        assert "builds.mlp_1thread.target.threads" in header
        table = subprocess.run([sys.executable, "-m", *argv, "--no-pager"], cwd=repo, capture_output=True, text=True,
                               env={**os.environ, "COLUMNS": "160", "DVC_NO_ANALYTICS": "1"}).stdout
        assert "two-threads" in table and "…" not in table, table
