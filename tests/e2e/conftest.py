"""The fixture project (tests/fixtures/project) with the framework files in a temporary git repository,
for end-to-end `dvc repro` tests (never the user's conf/)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_PROJECT = ROOT / "tests" / "fixtures" / "project"
FRAMEWORK_FILES = ("pipeline", "dvc.yaml", ".dvcignore", ".gitignore", "requirements", "pyproject.toml")

# The fixture's digits CNN with two builds (its files already carry test-sized settings: 2 epochs,
# 10 timed runs, 32 calibration samples); in the project config so `dvc exp run`, which recomposes
# conf/, keeps them.
SMALL_CONFIG = """\
defaults:
  - model@models.digits_cnn: digits_cnn
  - recipe@builds.cnn_fp32: cnn_fp32
  - recipe@builds.cnn_static_int8: cnn_static_int8
  - _self_
builds:
  cnn_static_int8:
    evaluate: {gates: {min_cosine: null}}
"""


class Repo:
    """The temporary project: run commands in it with .venv's python and dvc first on PATH."""

    def __init__(self, path: Path) -> None:
        self.path = path
        bindir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "e2e",
            "GIT_AUTHOR_EMAIL": "e2e@example.com",
            "GIT_COMMITTER_NAME": "e2e",
            "GIT_COMMITTER_EMAIL": "e2e@example.com",
            "ONNXBUILD_LOG_DIR": str(path / "logs"),
        }
        self.env.pop("DVC_EXP_NAME", None)

    def run(self, *cmd: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), cwd=self.path, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def dvc(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args, check=check, timeout=timeout)

    def onnxbuild(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "pipeline.cli", *args, check=check)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    @staticmethod
    def ran(proc: subprocess.CompletedProcess) -> set[str]:
        """Stages that `dvc repro` ran (from its "Running stage 'X':" lines)."""
        out = proc.stdout + proc.stderr
        return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


def make_repo(dest: Path, config: str | None = SMALL_CONFIG) -> Repo:
    """The fixture project with the framework files, as a git + DVC repository (``config``: its
    conf/config.yaml; None keeps the fixture's)."""
    shutil.copytree(FIXTURE_PROJECT, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in FRAMEWORK_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    if config is not None:
        (dest / "conf" / "config.yaml").write_text(config)
    repo = Repo(dest)
    repo.run("git", "init", "-q")
    repo.dvc("init", "-q")
    shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    return repo


@pytest.fixture
def small_repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "project")


class ToolsE2E:
    """``make_repo`` for tests (importlib import mode cannot import conftest as a module)."""

    make_repo = staticmethod(make_repo)


@pytest.fixture
def tools_e2e() -> type[ToolsE2E]:
    return ToolsE2E
