"""Recipes are code: the _target_ allowlist, confined paths, and locating modules without running them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.schema import Factory
from pipeline.trust import Policy, load_policy, locate_module


@pytest.fixture
def evilpkg(tmp_path, monkeypatch):
    """A package whose __init__ leaves a marker file when it runs; its submodule does too."""
    pkg = tmp_path / "evilpkg"
    pkg.mkdir()
    marker = tmp_path / "ran"
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('init\\n')\n")
    (pkg / "mod.py").write_text(f"open({str(marker)!r}, 'a').write('mod\\n')\ndef fn(): return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    for name in [m for m in sys.modules if m == "evilpkg" or m.startswith("evilpkg.")]:
        del sys.modules[name]


def test_locating_a_submodule_runs_no_code_of_its_package(evilpkg):
    spec = locate_module("evilpkg.mod")
    assert spec is not None and spec.origin.endswith("mod.py")
    assert locate_module("evilpkg.nope") is None
    assert locate_module("evilpkg.mod.deeper") is None  # mod is a module, not a package
    assert not evilpkg.exists()


def test_factory_validation_locates_without_importing(evilpkg):
    """The schema said "located (not imported)" but find_spec('evilpkg.mod') ran evilpkg/__init__.py."""
    Factory.model_validate({"_target_": "evilpkg.mod.fn"})
    assert not evilpkg.exists()
    with pytest.raises(ValueError, match="no such module"):
        Factory.model_validate({"_target_": "evilpkg.missing.fn"})
    assert not evilpkg.exists()


def test_factory_still_finds_installed_and_loaded_modules():
    Factory.model_validate({"_target_": "pipeline.data.digits.load"})
    Factory.model_validate({"_target_": "os.path.join"})
    with pytest.raises(ValueError):
        Factory.model_validate({"_target_": "no_such_top.mod.fn"})


def _policy(tmp_path, targets=("pipeline",), paths=()):
    return Policy(root=tmp_path, targets=tuple(targets), paths=tuple(paths), config="conf/config.yaml")


@pytest.mark.parametrize("target", ["os.system", "subprocess.run", "pipelinex.mod.fn", "builtins.eval", 3])
def test_target_outside_the_allowlist_is_one_line_naming_key_target_and_allowlist(tmp_path, target):
    with pytest.raises(ConfigError) as info:
        _policy(tmp_path, ["pipeline", "mypkg"]).check(
            {"factory": {"_target_": "pipeline.models.digits_cnn.build"}, "calibration": {"_target_": target}},
            "models.m",
            "conf/model/m.yaml",
        )
    text = str(info.value)
    assert "\n" not in text
    assert "key 'models.m.calibration._target_'" in text and f"'{target}'" in text
    assert "valid choices: mypkg, pipeline" in text and "conf/model/m.yaml" in text


def test_targets_inside_the_allowlist_pass_at_any_depth(tmp_path):
    _policy(tmp_path, ["pipeline", "mypkg.models"]).check(
        {"metrics": [{"_target_": "mypkg.models.x.metric"}], "train": {"dataset": {"_target_": "pipeline.data.digits.load"}}},
        "models.m",
    )
    with pytest.raises(ConfigError, match="mypkg.other"):
        _policy(tmp_path, ["mypkg.models"]).check({"evaluate": {"metrics": [{"_target_": "mypkg.other.f"}]}}, "builds.b")


@pytest.mark.parametrize("value", ["/etc/passwd", "../outside.onnx", "models/../../x", "~/model.onnx"])
def test_model_files_outside_the_project_are_refused(tmp_path, value):
    with pytest.raises(ConfigError) as info:
        _policy(tmp_path).check({"watch": value}, "models.m")
    assert "key 'models.m.watch'" in str(info.value) and "allow_paths" in str(info.value)


def test_model_files_inside_the_project_packages_or_allowed_folders_pass(tmp_path):
    policy = _policy(tmp_path / "proj", paths=["/data/models"])
    for value in ("models/m.onnx", "./m.onnx", "pkg://rapidocr_onnxruntime/models/x.onnx", "/data/models/m.onnx", None):
        policy.check({"path": value, "checkpoint": value, "watch": value}, "models.m")
    with pytest.raises(ConfigError):
        policy.check({"path": "/data/modelsX/m.onnx"}, "models.m")  # a prefix is a folder, not a string


def test_default_policy_is_pipeline_and_the_projects_own_packages(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("defaults:\n  - _self_\n")
    (tmp_path / "mymodels").mkdir()
    (tmp_path / "mymodels" / "__init__.py").write_text("")
    (tmp_path / "data").mkdir()  # not a package
    policy = load_policy(tmp_path / "conf" / "config.yaml")
    assert policy.targets == ("pipeline", "mymodels")
    assert policy.root == tmp_path.resolve()


def test_project_block_is_validated(tmp_path):
    (tmp_path / "conf").mkdir()
    cfg = tmp_path / "conf" / "config.yaml"
    cfg.write_text("project:\n  allow_target: [x]\n")
    with pytest.raises(ConfigError, match=r"project.allow_target.*unknown key.*allow_targets"):
        load_policy(cfg)
    cfg.write_text("project:\n  allow_targets: ['os; rm']\n")
    with pytest.raises(ConfigError, match="not a module prefix"):
        load_policy(cfg)
    cfg.write_text("project:\n  allow_paths: [relative/dir]\n")
    with pytest.raises(ConfigError, match="absolute folder"):
        load_policy(cfg)
    cfg.write_text("project:\n  allow_targets: [pipeline, mypkg]\n  allow_paths: [/srv/models]\n")
    policy = load_policy(cfg)
    assert policy.targets == ("pipeline", "mypkg") and policy.paths == (str(Path("/srv/models")),)


def test_a_packaged_model_path_locates_its_package_without_running_it(evilpkg, tmp_path):
    """``pkg://evilpkg.data/model.onnx`` used find_spec('evilpkg.data'), which ran evilpkg/__init__.py."""
    from pipeline.models.packaged import package_dir

    (tmp_path / "evilpkg" / "data").mkdir()
    (tmp_path / "evilpkg" / "data" / "__init__.py").write_text("")
    assert package_dir("evilpkg.data") == tmp_path / "evilpkg" / "data"
    assert not evilpkg.exists()
    with pytest.raises(ConfigError, match="not installed"):
        package_dir("evilpkg.nothing")
    assert not evilpkg.exists()


def test_onnxbuild_check_never_imports_a_target_outside_the_allowlist(tmp_path, evilpkg, monkeypatch):
    """`onnxbuild check` imports every _target_ to see that it loads: not one the project disallows."""
    from pipeline.project_check import Report, check_targets

    policy = _policy(tmp_path, ["pipeline"])
    report = Report()
    data = {"models": {"m": {"calibration": {"_target_": "evilpkg.mod.fn"}, "factory": {"_target_": "pipeline.data.digits.load"}}}}
    check_targets(data, lambda key: "conf/model/m.yaml", report, policy)
    assert not evilpkg.exists()
    assert any("'evilpkg.mod.fn'" in e and "valid choices: pipeline" in e for e in report.errors), report.errors
