"""onnxbuild compose: deterministic output identical to DVC's own composition, one-line errors with
choices for bad overrides, and params.yaml / dvc.yaml untouched on error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra

from pipeline.compose import compose, main, write_params
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def _clean_hydra():
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def ws(tmp_path, monkeypatch):
    shutil.copytree(CONF, tmp_path / "conf")
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    for watched in ("pipeline/models", "requirements"):  # the models' `watch` paths must exist
        shutil.copytree(ROOT / watched, tmp_path / watched)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_composing_twice_is_byte_identical(ws):
    assert main([]) == 0
    first = (ws / "params.yaml").read_bytes()
    assert main([]) == 0
    assert (ws / "params.yaml").read_bytes() == first
    assert yaml.safe_load(first)["builds"]


def test_output_is_what_dvc_exp_run_writes(ws):
    """DVC's Hydra composition (used by `dvc exp run`) and ours give the same bytes."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(ws / "dvc_params.yaml", str(ws / "conf"), None, "config", str(ws), ["builds.cnn_fp32.target.threads=1"])
    GlobalHydra.instance().clear()
    write_params(compose(["builds.cnn_fp32.target.threads=1"], ws / "conf"), ws / "params.yaml")
    assert (ws / "params.yaml").read_bytes() == (ws / "dvc_params.yaml").read_bytes()


def test_params_file_is_a_normal_readable_file(ws):
    write_params(compose([], "conf"), "params.yaml")
    assert (ws / "params.yaml").stat().st_mode & 0o044 == 0o044


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("quantization=nonexistent", ["unknown quantization option 'nonexistent'", "static_int8_qoperator", "dynamic_int8"]),
        ("quantization@builds.cnn_fp32.quantization=nope", ["unknown quantization option 'nope'", "static_int8"]),
        ("builds.cnn_fp32.quantization=nope", ["unknown quantization option 'nope'", "none"]),
        ("builds.cnn_fp32.target.threads=abc", ["builds.cnn_fp32.target.threads", "integer", "'abc'", "conf/recipe/cnn_fp32.yaml"]),
        ("target.threads=abc", ["target.threads", "integer", "'abc'"]),
        ("builds.cnn_fp32.target.thread=2", ["unknown key 'thread'", "threads", "inter_op_threads"]),
        ("builds.cnn_fp32.targt.threads=2", ["unknown key 'targt'", "target", "quantization"]),
        ("+builds.cnn_fp32.target.thread=2", ["builds.cnn_fp32.target.thread", "unknown key", "threads"]),
        ("+recipe@builds.x=nope", ["unknown recipe option 'nope'", "cnn_fp32"]),
        ("builds.cnn_fp32.model=nope", ["unknown model 'nope'", "digits_cnn"]),
        ("builds.cnn_fp32.passes=[{name:foo}]", ["unknown pass 'foo'", "ort_optimize"]),
        ("target=gpu9", ["unknown target option 'gpu9'", "cpu_1thread"]),
        ("experiment=nope", ["unknown experiment option 'nope'", "single_thread"]),
        ("builds.cnn_fp32.target.threads=[1", ["cannot parse override"]),
        ("model=x", ["say which model", "model@models.NAME"]),
    ],
)
def test_bad_override_one_line_with_choices_and_files_untouched(ws, capsys, override, expected):
    assert main([]) == 0
    before = {n: ((ws / n).read_bytes(), (ws / n).stat().st_mtime_ns) for n in ("params.yaml", "dvc.yaml")}
    capsys.readouterr()
    assert main([override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    after = {n: ((ws / n).read_bytes(), (ws / n).stat().st_mtime_ns) for n in ("params.yaml", "dvc.yaml")}
    assert after == before
    assert not list(ws.glob(".params.yaml.tmp-*"))


def test_shorthand_group_option_applies_to_every_build(ws):
    comp = compose(["target=cpu_1thread"], "conf")
    assert {b["target"]["threads"] for b in comp.data["builds"].values()} == {1}
    comp = compose(["target.threads=2"], "conf")
    assert {b["target"]["threads"] for b in comp.data["builds"].values()} == {2}


def test_shorthand_selects_an_option_for_one_build(ws):
    comp = compose(["builds.cnn_fp32.quantization=static_int8"], "conf")
    assert comp.data["builds"]["cnn_fp32"]["quantization"]["name"] == "static_int8"
    assert comp.data["builds"]["cnn_dynamic_int8"]["quantization"]["name"] == "dynamic_int8"


def test_add_a_build_from_the_command_line(ws):
    comp = compose(["+recipe@builds.cnn_int8_1t=cnn_static_int8", "builds.cnn_int8_1t.target.threads=1"], "conf")
    assert comp.data["builds"]["cnn_int8_1t"]["target"]["threads"] == 1
    assert comp.source_of("builds.cnn_int8_1t") == "conf/recipe/cnn_static_int8.yaml"
    assert comp.source_of("models.digits_cnn") == "conf/model/digits_cnn.yaml"


def test_fifty_builds_compose(ws):
    declared = len(compose([], "conf").data["builds"])
    overrides = [f"+recipe@builds.b{i}=cnn_static_int8" for i in range(50 - declared)]
    comp = compose(overrides, "conf")
    assert len(comp.data["builds"]) == 50


def test_missing_config_dir_is_one_line(ws):
    with pytest.raises(ConfigError, match="config not found"):
        compose([], ws / "nowhere")


def test_watch_path_must_exist_in_a_dvc_project(ws, capsys):
    params = ws / "params.yaml"
    assert main([]) == 0
    before = params.read_bytes()
    assert main(["models.digits_cnn.watch=pipeline/models/gone.py"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "key 'models.digits_cnn.watch'" in err and "gone.py" in err
    assert params.read_bytes() == before


def test_override_of_a_list_item_is_named(ws, capsys):
    assert main(["models.digits_cnn.inputs.0.dtype=float64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "inputs[0].dtype" in err and "(set by override 'models.digits_cnn.inputs.0.dtype=float64')" in err
