"""The `params` stage: stale params.yaml fails first naming the command; fresh ones pass."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from pipeline.compose import compose, write_params
from pipeline.errors import ConfigError
from pipeline.stages import check as check_mod

ROOT = Path(__file__).resolve().parents[2]
LOG = logging.getLogger("test.check")


@pytest.fixture
def ws(tmp_path, monkeypatch, copy_fixture):
    """The fixture project (tests/fixtures/project) with dvc.yaml and .dvc/config, as the working
    folder, with a freshly composed params.yaml."""
    copy_fixture(tmp_path, dvc=True)
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    write_params(compose([], "conf"), "params.yaml")
    return tmp_path


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _edit_recipe(ws: Path) -> Path:
    recipe = ws / "conf" / "target" / "cpu.yaml"
    recipe.write_text(recipe.read_text().replace("threads: 0", "threads: 3"))
    return recipe


def test_fresh_after_compose(ws):
    assert "same as composing" in check_mod.check(Path("conf"), Path("params.yaml"), Path("dvc.yaml"), LOG)


def test_fresh_even_when_older_than_conf_if_content_matches(ws):
    """A fresh clone gives files arbitrary mtimes: identical content is enough."""
    _age(ws / "params.yaml", 3600)
    assert "same as composing" in check_mod.check_fresh(Path("conf"), Path("params.yaml"), LOG)


def test_stale_after_a_recipe_edit_names_the_command(ws):
    _age(ws / "params.yaml", 60)
    _edit_recipe(ws)
    with pytest.raises(ConfigError) as err:
        check_mod.check_fresh(Path("conf"), Path("params.yaml"), LOG)
    msg = str(err.value)
    assert "stale" in msg and "onnxbuild compose" in msg and "dvc exp run" in msg
    assert "conf/target/cpu.yaml" in msg and "threads: 0 -> 3" in msg
    assert "\n" not in msg


def test_composed_with_overrides_after_the_last_edit_is_fresh(ws):
    _edit_recipe(ws)
    _age(ws / "conf" / "target" / "cpu.yaml", 60)
    write_params(compose(["target.threads=2"], "conf"), "params.yaml")
    assert "overrides" in check_mod.check_fresh(Path("conf"), Path("params.yaml"), LOG)


def test_under_dvc_exp_run_params_are_fresh_by_construction(ws, monkeypatch):
    _age(ws / "params.yaml", 60)
    _edit_recipe(ws)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc12")
    assert "dvc exp run" in check_mod.check_fresh(Path("conf"), Path("params.yaml"), LOG)


def test_dvc_exp_marker_is_ignored_without_hydra_composition(ws, monkeypatch):
    (ws / ".dvc" / "config").write_text("[core]\n    remote = x\n")
    _age(ws / "params.yaml", 60)
    _edit_recipe(ws)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc12")
    with pytest.raises(ConfigError, match="stale"):
        check_mod.check_fresh(Path("conf"), Path("params.yaml"), LOG)


def test_missing_params_file(ws):
    (ws / "params.yaml").unlink()
    with pytest.raises(ConfigError, match="onnxbuild compose"):
        check_mod.check_fresh(Path("conf"), Path("params.yaml"), LOG)


def test_broken_recipe_is_reported(ws):
    (ws / "conf" / "recipe" / "cnn_fp32.yaml").write_text("defaults:\n  - /build@_here_: default\n  - override /quantization@quantization: nope\n")
    with pytest.raises(ConfigError, match="do not compose.*unknown quantization option 'nope'"):
        check_mod.check_fresh(Path("conf"), Path("params.yaml"), LOG)


def test_invalid_params_from_an_experiment_are_caught(ws, monkeypatch):
    """`dvc exp run -S` writes params.yaml without validating it: the check validates."""
    data = yaml.safe_load((ws / "params.yaml").read_text())
    data["builds"]["cnn_fp32"]["target"]["threads"] = "abc"
    (ws / "params.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc12")
    with pytest.raises(ConfigError, match="builds.cnn_fp32.target.threads"):
        check_mod.check(Path("conf"), Path("params.yaml"), Path("dvc.yaml"), LOG)


def test_a_key_a_stage_reads_must_exist(ws, monkeypatch):
    data = yaml.safe_load((ws / "params.yaml").read_text())
    del data["models"]["digits_cnn"]["calibration"]
    (ws / "params.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc12")
    with pytest.raises(ConfigError) as err:
        check_mod.check(Path("conf"), Path("params.yaml"), Path("dvc.yaml"), LOG)
    assert "models.digits_cnn.calibration" in str(err.value) and "quantize@" in str(err.value)


def test_required_keys_follow_dvc_yaml(ws):
    data = yaml.safe_load((ws / "params.yaml").read_text())
    keys = check_mod.required_keys(Path("dvc.yaml"), data)
    assert ("evaluate@cnn_fp32", "builds.cnn_fp32.target") in keys
    assert ("quantize@cnn_static_int8", "models.digits_cnn.calibration") in keys
    assert ("prepare@digits_cnn", "models.digits_cnn.train") in keys


def test_entry_point_writes_a_constant_stamp(ws, capsys):
    assert check_mod.main(["--conf", "conf", "--params", "params.yaml", "--out", "artifacts/params.ok"]) == 0
    first = (ws / "artifacts" / "params.ok").read_bytes()
    write_params(compose(["target.threads=2"], "conf"), "params.yaml")
    assert check_mod.main(["--conf", "conf", "--params", "params.yaml", "--out", "artifacts/params.ok"]) == 0
    assert (ws / "artifacts" / "params.ok").read_bytes() == first


def test_entry_point_fails_in_one_line_without_stamp(ws, capsys):
    _age(ws / "params.yaml", 60)
    _edit_recipe(ws)
    assert check_mod.main(["--conf", "conf", "--params", "params.yaml", "--out", "artifacts/params.ok"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxbuild compose" in err[0]
    assert not (ws / "artifacts" / "params.ok").exists()


def test_a_watch_path_that_does_not_exist_names_the_key(ws):
    import yaml

    data = yaml.safe_load(Path("params.yaml").read_text())
    data["models"]["digits_cnn"]["watch"] = "fixturemodels/gone.py"
    Path("params.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        check_mod.check(Path("conf"), Path("params.yaml"), Path("dvc.yaml"), LOG)
    assert err.value.key == "models.digits_cnn.watch" and "gone.py" in str(err.value)
