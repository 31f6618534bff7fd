"""`onnxbuild check` (pipeline.project_check) on the fixture project: every error listed, not just the first."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from pipeline.cli import main
from pipeline.compose import compose, write_params
from pipeline.project_check import check_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ws(tmp_path, monkeypatch, copy_fixture):
    copy_fixture(tmp_path, dvc=True)
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    sys.path.insert(0, str(tmp_path))
    for name in [m for m in sys.modules if m == "fixturemodels" or m.startswith("fixturemodels.")]:
        monkeypatch.delitem(sys.modules, name)  # import this copy's package, as a fresh process would
    write_params(compose([], "conf"), "params.yaml")
    yield tmp_path
    GlobalHydra.instance().clear()


def test_the_fixture_project_passes(ws, capsys):
    report = check_project()
    assert report.ok, report.errors
    assert report.counts["models"] == 2 and report.counts["recipes"] == 4 and report.counts["targets"] >= 3
    assert main(["check"]) == 0
    assert "onnxbuild check: ok" in capsys.readouterr().out


def test_every_schema_error_of_a_model_file_is_listed(ws):
    model = ws / "conf" / "model" / "tiny_mlp.yaml"
    text = model.read_text().replace("task: other", "task: translation").replace("hidden: 32", "hidden: 32\nwidht: 3")
    text = text.replace("  num_samples: 64", "  num_samples: 4").replace("opset: 18", "opset: 99")
    model.write_text(text)
    report = check_project()
    mine = [e for e in report.errors if e.startswith("conf/model/tiny_mlp.yaml")]
    assert any("models.tiny_mlp.task" in e for e in mine), report.errors
    assert any("models.tiny_mlp.export.opset" in e for e in mine), report.errors
    assert any("models.tiny_mlp.reference.num_samples" in e for e in mine), report.errors
    assert all("\n" not in e for e in report.errors)


def test_broken_recipes_declared_or_not_are_all_listed(ws, capsys):
    recipe = ws / "conf" / "recipe"
    (recipe / "cnn_fp32.yaml").write_text(
        "# broken\ndefaults:\n  - /build@_here_: default\n  - override /quantization@quantization: nope\n  - _self_\nmodel: digits_cnn\n"
    )
    (recipe / "opt_in.yaml").write_text("defaults:\n  - /build@_here_: default\n  - _self_\nmodel: no_such_model\n")
    (recipe / "gated.yaml").write_text(
        "# gates a figure classification does not measure\ndefaults:\n  - /build@_here_: default\n  - _self_\n"
        "model: digits_cnn\nevaluate:\n  gates:\n    min:\n      iou_min: 0.9\n"
    )
    report = check_project()
    text = "\n".join(report.errors)
    assert "conf/recipe/cnn_fp32.yaml" in text and "nope" in text
    assert "conf/recipe/opt_in.yaml" in text and "no_such_model" in text
    assert "conf/recipe/gated.yaml" in text and "iou_min" in text
    assert any("opt_in.yaml has no header comment" in n for n in report.notes)
    assert main(["check"]) == 1
    err = capsys.readouterr().err
    assert err.count("error: ") >= 3 and "error(s) in conf/" in err
    assert "builds unknown: the project did not compose" in err and "0 declared builds" not in err


def test_a_target_that_fails_on_import_and_missing_paths_are_listed(ws):
    (ws / "fixturemodels" / "mlp.py").write_text("import torch\nraise ImportError('mlp needs libfoo.so')\n")
    (ws / "fixturemodels" / "cnn.py").rename(ws / "fixturemodels" / "cnn_moved.py")
    report = check_project()
    text = "\n".join(report.errors)
    assert "module 'fixturemodels.mlp' fails on import: ImportError: mlp needs libfoo.so" in text
    assert "fixturemodels.cnn" in text  # the factory module is gone
    assert "models.digits_cnn.watch" in text and "fixturemodels/cnn.py" in text  # and so is its watch path
    assert all("\n" not in e for e in report.errors)


def test_a_yaml_syntax_error_names_file_and_line(ws):
    (ws / "conf" / "target" / "cpu.yaml").write_text("name: cpu\nthreads: [0\n")
    report = check_project()
    assert any(e.startswith("conf/target/cpu.yaml:") and "YAML syntax error" in e for e in report.errors), report.errors


def test_stale_params_is_an_error(ws):
    import os
    import time

    old = time.time() - 60
    os.utime(ws / "params.yaml", (old, old))
    cpu = ws / "conf" / "target" / "cpu.yaml"
    cpu.write_text(cpu.read_text().replace("threads: 0", "threads: 3"))
    report = check_project()
    assert any("stale" in e and "onnxbuild compose" in e for e in report.errors), report.errors


def test_every_error_of_one_recipe_is_listed(ws):
    (ws / "conf" / "recipe" / "many.yaml").write_text(
        "# many errors\ndefaults:\n  - /build@_here_: default\n  - _self_\nmodel: digits_cnn\n"
        "quantization: {name: bogus}\npasses: [{name: no_such_pass}]\n"
        "evaluate: {runs: -3, warmup: -1}\ntarget: {threads: -2}\n"
    )
    mine = [e for e in check_project().errors if e.startswith("conf/recipe/many.yaml")]
    for key in ("quantization.name", "target.threads", "passes[0].name", "evaluate.runs", "evaluate.warmup"):
        assert any(f"builds.many.{key}'" in e for e in mine), (key, mine)
    assert not any("more error(s)" in e for e in mine), mine


def test_a_yaml_syntax_error_in_a_recipe_is_listed_once_with_its_own_path(ws):
    (ws / "conf" / "recipe" / "broken.yaml").write_text("# broken\nmodel: digits_cnn\n  indent: broken: yaml\n")
    mine = [e for e in check_project().errors if "broken.yaml" in e]
    assert mine == ["conf/recipe/broken.yaml:3: YAML syntax error: mapping values are not allowed here"], mine
