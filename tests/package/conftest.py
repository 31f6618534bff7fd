"""A real, small DVC project for packaging tests (built once per module): the fixture project's MLP
with three builds: ``mlp_fp32`` (built, gates pass), ``mlp_gated`` (built, a latency gate no build can
meet) and ``mlp_unbuilt`` (declared, never built)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
# Three builds of the fixture MLP for the packaging tests.
defaults:
  - model@models.tiny_mlp: tiny_mlp
  - recipe@builds.mlp_fp32: mlp_fp32
  - recipe@builds.mlp_gated: mlp_fp32
  - recipe@builds.mlp_unbuilt: mlp_fp32
  - _self_
builds:
  mlp_fp32:
    target: {threads: 1, session_config: {session.intra_op.allow_spinning: "0"}}
  mlp_gated:
    evaluate: {gates: {max_p50_ms: 0.000001}}
"""


class Project:
    def __init__(self, path: Path, lock: Path) -> None:
        self.path = path
        self.env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
                    "DVC_NO_ANALYTICS": "1", "ONNXBUILD_LOG_DIR": str(path / "logs"),
                    "ONNXBUILD_BENCH_LOCK": str(lock)}

    def run(self, *cmd: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), cwd=cwd or self.path, env=self.env, capture_output=True, text=True,
                              timeout=900)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc


@pytest.fixture(scope="module")
def built_project(tmp_path_factory) -> Project:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_root_conftest", ROOT / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    base = tmp_path_factory.mktemp("pkg")
    path = conftest.copy_fixture_project(base / "project", framework=True, dvc=True)
    (path / "conf" / "config.yaml").write_text(CONFIG)
    shutil.copy2(ROOT / ".gitignore", path / ".gitignore")
    project = Project(path, base / "bench.lock")
    project.run("git", "init", "-q")
    project.run(sys.executable, "-m", "dvc", "init", "-q", "-f")
    shutil.copy2(ROOT / ".dvc" / "config", path / ".dvc" / "config")
    project.run(sys.executable, "-m", "pipeline.cli", "compose")
    project.run(sys.executable, "-m", "dvc", "repro", "evaluate@mlp_fp32", "evaluate@mlp_gated")
    return project
