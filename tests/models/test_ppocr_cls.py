"""PaddleOCR's text-direction classifier as shipped by rapidocr-onnxruntime (a real third-party ONNX
file, opset 11, free dims written as -1 and '?'): the model spec, its recipes, the real model's
accuracy on synthetic text lines, and the whole chain (prepare, export at opset 13, passes, static
int8, evaluate) on a reduced reference set."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra

from pipeline.compose import compose
from pipeline.data import text_lines
from pipeline.models import packaged
from pipeline.schema import validate_model, validate_project

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
MODEL_FILE = CONF / "model" / "ppocr_cls.yaml"
BUILDS = ("ppocr_fp32", "ppocr_static_int8")
LOG = logging.getLogger("test.ppocr_cls")


def _spec_data() -> dict:
    return yaml.safe_load(MODEL_FILE.read_text())


def _compose(*overrides: str):
    try:
        # the default project declares the model and both builds (conf/config.yaml)
        return compose(list(overrides), CONF)
    finally:
        GlobalHydra.instance().clear()


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_model_spec_validates_and_names_a_packaged_file() -> None:
    spec = validate_model(_spec_data(), "models.ppocr_cls", str(MODEL_FILE))
    assert spec.framework == "onnx" and spec.task == "classification"
    assert packaged.resolve(spec.path).is_file()
    assert packaged.package_version(spec.path) is not None
    assert (ROOT / spec.watch).is_file()
    assert spec.export.opset >= 13  # per-channel QDQ needs DequantizeLinear's axis
    assert spec.reference.dataset.target == "pipeline.data.text_lines.load"
    assert spec.reference.dataset.kwargs["split"] != spec.calibration.kwargs["split"]
    assert spec.reference.num_samples >= 256


def test_free_dims_of_the_paddle_file_are_read_and_named() -> None:
    """The file marks its batch dim -1 and height/width '?': they are free dims, named from the spec."""
    import onnx

    from pipeline.sources.onnx_source import graph_input_specs, name_symbolic_dims

    model = onnx.load(str(packaged.resolve(_spec_data()["path"])), load_external_data=False)
    declared = validate_model(_spec_data(), "models.ppocr_cls")
    specs = graph_input_specs(model, declared)
    assert [(s.name, s.shape) for s in specs] == [("x", ("batch", 3, "height", "width"))]
    from_graph = validate_model(
        {**_spec_data(), "inputs": None, "export": {"opset": 13, "dims": {"batch": 1, "x_2": 48, "x_3": 192}}}, "m"
    )
    assert graph_input_specs(model, from_graph)[0].shape == ("batch", 3, "x_2", "x_3")
    changes = name_symbolic_dims(model, specs, dynamic=True, dims=declared.export.dims)
    assert changes["named_dims"] == ["x[0]=batch", "x[2]=height", "x[3]=width"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]


def test_the_real_model_tells_upright_from_upside_down_lines() -> None:
    data = text_lines.load("test", n=128)
    sess = _session(packaged.resolve(_spec_data()["path"]))
    probs = sess.run(None, {"x": data.inputs["x"]})[0]
    assert probs.shape == (128, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)  # a softmax over ['0', '180']
    pred = probs.argmax(axis=1)
    assert (pred == data.labels).mean() > 0.9
    for label in (0, 1):  # right on both classes, not one answer for everything
        assert (pred[data.labels == label] == label).mean() > 0.8
    # turning the preprocessed line by 180 degrees (padding aside) flips the answer
    upright = data.inputs["x"][data.labels == 0][:16]
    width = (np.abs(upright).sum(axis=(1, 2)) > 0).sum(axis=1)
    turned = np.zeros_like(upright)
    for i, w in enumerate(width):
        turned[i, :, :, :w] = upright[i, :, ::-1, :w][:, :, ::-1]
    flipped = sess.run(None, {"x": turned})[0].argmax(axis=1)
    assert (flipped == 1).mean() > 0.8


def test_recipes_compose_with_their_gates() -> None:
    comp = _compose()
    project = validate_project(comp.data, comp.source_of)
    assert comp.source_of("models.ppocr_cls").endswith("conf/model/ppocr_cls.yaml")
    fp32, int8 = (project.builds[b] for b in BUILDS)
    assert fp32.model == int8.model == "ppocr_cls"
    assert fp32.quantization.name == "none"
    assert int8.quantization.name == "static_int8"
    assert int8.quantization.params.format == "qdq" and int8.quantization.params.per_channel is True
    assert int8.evaluate.gates.max_accuracy_drop == 0.01
    assert 0 < int8.evaluate.gates.min_cosine < fp32.evaluate.gates.min_cosine <= 1
    for b in BUILDS:
        text = (CONF / "recipe" / f"{b}.yaml").read_text()
        assert text.startswith("#") and f"evaluate@{b}" in text.split("defaults:")[0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """prepare + export of the model, with a reduced reference (128 lines) and calibration (64)."""
    from pipeline.stages.export import export_model
    from pipeline.stages.prepare import prepare_model

    comp = _compose(
        "models.ppocr_cls.reference.num_samples=128",
        "models.ppocr_cls.reference.dataset.n=128",
        "models.ppocr_cls.calibration.n=64",
        "builds.ppocr_static_int8.quantization.calibration.num_samples=64",
        *(f"builds.{b}.evaluate.{k}={v}" for b in BUILDS for k, v in (("warmup", 1), ("runs", 10))),
    )
    project = validate_project(comp.data)
    spec = project.models["ppocr_cls"]
    root = tmp_path_factory.mktemp("ppocr")
    source = prepare_model(spec, root / "source", LOG, name="ppocr_cls")
    info = export_model(spec, root / "source", root / "export", LOG, name="ppocr_cls")
    return {"root": root, "project": project, "spec": spec, "source": source, "export": info}


def test_export_upgrades_the_opset_and_names_the_dims(chain: dict) -> None:
    from pipeline.sources.common import read_reference

    assert chain["source"]["opset"] == 11
    info = chain["export"]
    assert info["opset"] == 13
    assert info["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    inputs, outputs, labels = read_reference(chain["root"] / "export")
    assert inputs["x"].shape == (128, 3, 48, 192) and labels.shape == (128,)
    # the upgraded model runs other batch sizes and widths, and agrees with the original file
    exported = _session(chain["root"] / "export" / "model.onnx")
    original = _session(packaged.resolve(chain["spec"].path))
    x = inputs["x"][:5, :, :, :160]
    np.testing.assert_allclose(exported.run(None, {"x": x})[0], original.run(None, {"x": x})[0], atol=1e-5)


@pytest.mark.parametrize("build_name", BUILDS)
def test_builds_pass_their_gates(chain: dict, build_name: str) -> None:
    from pipeline.evaluate.metrics import evaluate_build
    from pipeline.stages.passes import run_passes
    from pipeline.stages.quantize import quantize_build

    build, spec, root = chain["project"].builds[build_name], chain["spec"], chain["root"]
    run_passes(build, spec, root / "export", root / build_name / "passes", LOG)
    quant = quantize_build(build, spec, root / build_name / "passes", root / build_name / "model", LOG)
    metrics = evaluate_build(build, spec, root / build_name / "model", root / "export", LOG, name=build_name)
    assert metrics["gates"]["failures"] == [], metrics["gates"]
    assert set(metrics["gates"]["checked"]) >= {"min_cosine", "max_accuracy_drop"}
    assert metrics["accuracy"]["source_top1"] > 0.9 and metrics["accuracy"]["samples"] == 128
    if build_name == "ppocr_static_int8":
        assert quant["ops"].get("QuantizeLinear", 0) > 0 and quant["calibration_samples"] == 64
        assert metrics["model_size_mb"] < 0.7 * metrics["reference"]["model_size_mb"]
    else:
        assert "QuantizeLinear" not in quant["ops"]
