"""Fixtures for composing the fixture project (tests/fixtures/project) and loading the framework's dvc.yaml
in a throw-away DVC repository (never the user's conf/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_PROJECT = ROOT / "tests" / "fixtures" / "project"
FRAMEWORK_FILES = ("pipeline", "dvc.yaml", ".dvcignore", "requirements")


def copy_project(dest: Path, config_yaml: str | None = None) -> Path:
    """The fixture project plus the framework files a DVC build needs, in ``dest`` (optionally with
    another conf/config.yaml)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(FIXTURE_PROJECT, dest, ignore=ignore, dirs_exist_ok=True)
    for name in FRAMEWORK_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    (dest / ".dvc").mkdir(exist_ok=True)
    shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    (dest / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    if config_yaml is not None:
        (dest / "conf" / "config.yaml").write_text(config_yaml)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def compose_in(cwd: Path, *overrides: str) -> Path:
    """Compose ``cwd/conf`` with ``overrides`` into ``cwd/params.yaml`` (in-process: fast)."""
    from pipeline.compose import compose, write_params

    return write_params(compose(list(overrides), cwd / "conf"), cwd / "params.yaml")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the fixture project with the framework's dvc.yaml and a composed params.yaml, as a DVC repo."""
    dest = copy_project(tmp_path / "project")
    compose_in(dest)
    return dest


class Tools:
    """The helpers above, for tests (importlib import mode cannot import conftest as a module)."""

    run = staticmethod(run)
    compose_in = staticmethod(compose_in)
    copy_project = staticmethod(copy_project)


@pytest.fixture
def tools() -> type[Tools]:
    return Tools


@pytest.fixture(scope="module")
def tools_module() -> type[Tools]:
    return Tools
