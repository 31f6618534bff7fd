"""onnxbuild compose: deterministic output identical to DVC's own composition, one-line errors with
choices for bad overrides, and params.yaml / dvc.yaml untouched on error."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra

from pipeline.compose import compose, main, write_params
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_hydra():
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def ws(fixture_project, monkeypatch):
    """The fixture project (never the user's conf/) with the framework's dvc.yaml."""
    shutil.copy2(ROOT / "dvc.yaml", fixture_project / "dvc.yaml")
    monkeypatch.chdir(fixture_project)
    return fixture_project


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
    assert not list(ws.glob(".params.yaml.tmp-*")) and not list(ws.glob(".onnxbuild-tmp/*"))


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


# --- Recipes are code; one-line YAML errors; compose-time validation (on a tiny project of its own) ---

from tests.reliability.tiny import make_project  # noqa: E402


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    root = make_project(tmp_path / "proj")
    (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(root)
    assert main([]) == 0
    return root


def _refused(root, capsys, override, expected):
    before = (root / "params.yaml").read_bytes()
    capsys.readouterr()
    assert main([override] if isinstance(override, str) else override) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    assert (root / "params.yaml").read_bytes() == before
    return err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # recipes are code: only allowlisted modules, files inside the project
        ("models.tiny.calibration={_target_: os.system, command: 'touch pwned'}",
         ["key 'models.tiny.calibration._target_'", "'os.system'", "valid choices: pipeline", "project.allow_targets"]),
        ("+builds.tiny_fp32.evaluate.metrics=[{_target_: subprocess.run, provides: [x]}]",
         ["builds.tiny_fp32.evaluate.metrics[0]._target_", "'subprocess.run'"]),
        ("+project.allow_targets=[os]", ["'project' is set in conf/config.yaml only"]),
        ("project.allow_targets=[pipeline, os]", ["'project' is set in conf/config.yaml only"]),
        ("models.tiny.watch=/etc/passwd", ["models.tiny.watch", "outside the project folder"]),
        ("models.tiny.path=../../etc/passwd", ["models.tiny.path", "outside the project folder"]),
        # compose-time validation
        ("builds.tiny_fp32.target.threads=100000", ["builds.tiny_fp32.target.threads", "cores"]),
        ("+builds.tiny_fp32.target.inter_op_threads=100000", ["inter_op_threads", "cores"]),
        ("builds.tiny_fp32.evaluate.gates.min_cosine=nan", ["gates.min_cosine", "finite"]),
        ("builds.tiny_fp32.evaluate.gates.min_cosine=inf", ["gates.min_cosine", "finite"]),
        ("+builds.tiny_fp32.evaluate.gates.min.cosine_min=-inf", ["gates.min.cosine_min", "finite"]),
        ("builds.tiny_fp32.evaluate.fidelity_samples=100", ["fidelity_samples 100 is more than the 64 reference samples", "models.tiny.reference.num_samples"]),
        ("builds.tiny_fp32.evaluate.fidelity_samples=100000", ["fidelity_samples"]),
        ("builds.tiny_fp32.evaluate.runs=1e23", ["builds.tiny_fp32.evaluate.runs"]),
        ("builds.tiny_fp32.evaluate.runs=10000000", ["builds.tiny_fp32.evaluate.runs", "100000"]),
        ("builds.tiny_fp32.evaluate.warmup=0", ["builds.tiny_fp32.evaluate.warmup"]),
        ("models.tiny.export.dims.batch=0", ["models.tiny.export.dims.batch", "greater than or equal to 1"]),
        ("models.tiny.export.dims.batch=1e9", ["models.tiny.export.dims.batch"]),
        ("models.tiny.reference.num_samples=1e12", ["models.tiny.reference.num_samples"]),
        ("+builds.tiny_fp32.target.provider_options.device_id=0", ["provider_options.device_id", "CPUExecutionProvider takes no provider options"]),
        ("builds.tiny_fp32.target.name=cuda", ["builds.tiny_fp32.target.name", "CUDAExecutionProvider", "installed providers: ", "CPUExecutionProvider", "onnxruntime-gpu"]),
        ("builds.tiny_fp32.target.name=openvino", ["OpenVINOExecutionProvider", "onnxruntime-openvino"]),
    ],
)
def test_unsafe_or_unbounded_values_are_one_line_errors(tiny, capsys, override, expected):
    _refused(tiny, capsys, override, expected)
    assert not (tiny / "pwned").exists()


def test_unknown_provider_option_of_an_accelerator_is_named_with_the_documented_ones(tiny, monkeypatch, capsys):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert main(["builds.tiny_fp32.target.name=cuda", "+builds.tiny_fp32.target.provider_options.device_id=0"]) == 0
    _refused(tiny, capsys, ["builds.tiny_fp32.target.name=cuda", "+builds.tiny_fp32.target.provider_options.devise_id=0"],
             ["provider_options.devise_id", "has no such option", "device_id", "gpu_mem_limit"])


@pytest.mark.parametrize("name", ["a b", "a/b", "é", "a+b", "x;y"])
def test_bad_build_and_model_names_fail_at_compose(tiny, capsys, name):
    cfg = tiny / "conf" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("recipe@builds.tiny_int8:", f"recipe@builds.{name}:"))
    err = _refused(tiny, capsys, [], ["build name", "letters, digits"])
    assert f"builds.{name}" in err


def test_compose_runs_no_code_of_a_local_package_it_may_not_import(tiny, capsys):
    """The issue's probe: a local evilpkg/__init__.py ran at compose time (find_spec of evilpkg.mod)."""
    (tiny / "evilpkg").mkdir()
    (tiny / "evilpkg" / "__init__.py").write_text("open('pwned', 'w').write('ran')\n")
    (tiny / "evilpkg" / "mod.py").write_text("open('pwned', 'w').write('ran')\ndef fn(): pass\n")
    sys.path.insert(0, str(tiny))
    try:
        _refused(tiny, capsys, "models.tiny.calibration={_target_: evilpkg.mod.fn}", ["'evilpkg.mod.fn'", "valid choices: pipeline"])
        assert not (tiny / "pwned").exists()
        # allowed by the project: located, still not run
        cfg = tiny / "conf" / "config.yaml"
        cfg.write_text(cfg.read_text().replace("allow_targets: [pipeline]", "allow_targets: [pipeline, evilpkg]"))
        assert main(["models.tiny.calibration={_target_: evilpkg.mod.fn}"]) == 0
        assert not (tiny / "pwned").exists()
    finally:
        sys.path.remove(str(tiny))
        for name in [m for m in sys.modules if m.split(".")[0] == "evilpkg"]:
            del sys.modules[name]


def test_allowed_paths_outside_the_project(tiny, tmp_path, capsys):
    outside = tmp_path / "models"
    outside.mkdir()
    (outside / "m.onnx").write_bytes((tiny / "models" / "tiny.onnx").read_bytes())
    _refused(tiny, capsys, f"models.tiny.path={outside}/m.onnx", ["models.tiny.path", "allow_paths"])
    cfg = tiny / "conf" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("allow_paths: []", f"allow_paths: [{outside}]"))
    assert main([f"models.tiny.path={outside}/m.onnx"]) == 0


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("evaluate:\n  gates: {min_cosine: 0.9\n", 8, "YAML syntax error"),
        ("model: tiny\n", 6, "duplicate key 'model'"),
        ("evaluate:\n  runs: 10\n   warmup: 1\n", 8, "YAML syntax error"),
    ],
)
def test_yaml_errors_in_a_recipe_are_one_line_with_file_and_line(tiny, capsys, text, line, words):
    recipe = tiny / "conf" / "recipe" / "tiny_fp32.yaml"
    recipe.write_text(recipe.read_text() + text)
    err = _refused(tiny, capsys, [], [f"conf/recipe/tiny_fp32.yaml:{line}: ", words])
    assert err.startswith("error: conf/recipe/tiny_fp32.yaml:"), err


def test_yaml_error_in_the_project_config_is_one_line(tiny, capsys):
    cfg = tiny / "conf" / "config.yaml"
    cfg.write_text(cfg.read_text() + "project:\n  allow_paths: []\n")
    _refused(tiny, capsys, [], ["conf/config.yaml:", "duplicate key 'project'"])
