"""Fixtures shared by every test package.

Framework tests never read the user's ``conf/``: they use the fixture project in
``tests/fixtures/project/`` (its own conf/ with the framework's config groups, two small models from
its own top-level package ``fixturemodels/`` and four builds). :func:`copy_fixture_project` copies it
to a temporary folder; the ``fixture_project`` fixture does that and puts the copy on ``sys.path``
the way every entry point does (:func:`pipeline.project.use_project`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_PROJECT = Path(__file__).resolve().parent / "fixtures" / "project"
# Framework files a DVC build of a project needs besides the project's own conf/ and code.
FRAMEWORK_FILES = ("pipeline", "dvc.yaml", ".dvcignore", "requirements", "pyproject.toml")


def copy_fixture_project(dest: Path, framework: bool = False, dvc: bool = False) -> Path:
    """Copy the fixture project to ``dest``. ``framework``: also the framework files a ``dvc repro``
    runs (``pipeline/``, ``dvc.yaml``, ...); ``dvc``: also ``.dvc/config`` (Hydra composition on)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(FIXTURE_PROJECT, dest, ignore=ignore, dirs_exist_ok=True)
    if framework:
        for name in FRAMEWORK_FILES:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=ignore, dirs_exist_ok=True)
            elif src.exists():
                shutil.copy2(src, dest / name)
    if dvc:
        (dest / ".dvc").mkdir(exist_ok=True)
        shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
        (dest / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    return dest


@pytest.fixture
def fixture_project(tmp_path, monkeypatch) -> Path:
    """A fresh copy of the fixture project (conf/ and its own package, no dvc.yaml), importable."""
    dest = copy_fixture_project(tmp_path / "fixture_project")
    monkeypatch.syspath_prepend(str(dest))
    return dest


@pytest.fixture
def fixture_conf(fixture_project) -> Path:
    """The fixture project's conf/ folder (a temporary copy)."""
    return fixture_project / "conf"


@pytest.fixture
def copy_fixture():
    """:func:`copy_fixture_project`, for tests (importlib import mode cannot import conftest)."""
    return copy_fixture_project


@pytest.fixture
def bench_lock(tmp_path, monkeypatch):
    """Keep test measurements off the host-wide benchmark lock of real runs."""
    path = tmp_path / "bench.lock"
    monkeypatch.setenv("ONNXBUILD_BENCH_LOCK", str(path))
    return path


def pytest_sessionstart(session) -> None:
    # The fixture project's own package is importable for tests that compose tests/fixtures/project/conf
    # in place (read-only, e.g. to parametrize over its recipes).
    if str(FIXTURE_PROJECT) not in sys.path:
        sys.path.append(str(FIXTURE_PROJECT))
