"""pipeline.project: the project root on the import path, its own packages, one-line import errors."""

from __future__ import annotations

import sys

import pytest

from pipeline import project
from pipeline.data import resolve_target
from pipeline.errors import ConfigError


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "conf").mkdir()
    return tmp_path


def _package(root, name, **modules):
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod, text in modules.items():
        (pkg / f"{mod}.py").write_text(text)
    return pkg


def test_use_project_puts_the_root_first_once(root):
    assert project.use_project(conf_dir=root / "conf") == root.resolve()
    assert sys.path[0] == str(root.resolve())
    project.use_project(root)
    assert sys.path.count(str(root.resolve())) == 1


def test_a_package_in_the_root_imports_after_use_project(root):
    _package(root, "acme_models_t1", net="def build():\n    return 'built'\n")
    with pytest.raises(ConfigError, match="no module 'acme_models_t1'"):
        project.import_target("acme_models_t1.net.build")
    project.use_project(conf_dir=root / "conf")
    assert project.import_target("acme_models_t1.net.build")() == "built"
    assert resolve_target("acme_models_t1.net.build")() == "built"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("def build(:\n", ["SyntaxError", "broken.py:1"]),
        ("raise RuntimeError('needs a GPU driver\\nsecond line')\n", ["RuntimeError: needs a GPU driver"]),
        ("import no_such_dependency_xyz\n", ["ModuleNotFoundError", "no_such_dependency_xyz"]),
    ],
)
def test_a_module_that_fails_on_import_is_one_line_naming_it(root, text, words):
    name = f"acme_broken_{abs(hash(text)) % 10**6}"
    _package(root, name, broken=text)
    project.use_project(root)
    with pytest.raises(ConfigError) as err:
        resolve_target(f"{name}.broken.build", key="models.m.factory._target_")
    msg = str(err.value)
    assert "\n" not in msg
    assert f"module '{name}.broken' fails on import" in msg and "models.m.factory._target_" in msg
    for word in words:
        assert word in msg


def test_a_missing_attribute_names_it(root):
    _package(root, "acme_models_t2", net="x = 1\n")
    project.use_project(root)
    with pytest.raises(ConfigError, match="'acme_models_t2.net' has no attribute 'build'"):
        project.import_target("acme_models_t2.net.build")


def test_own_packages_are_the_root_packages_and_modules_but_not_the_framework(root):
    _package(root, "acme")
    _package(root, "pipeline")
    _package(root, "tests")
    (root / "helpers.py").write_text("")
    (root / "notes").mkdir()
    (root / ".venv").mkdir()
    assert project.own_packages(root) == ["acme", "helpers"]


def test_the_fixture_project_has_its_own_package(fixture_project):
    assert project.own_packages(fixture_project) == ["fixturemodels"]
