"""The quantize stage: CLI entry point, quantization.json, atomic output, one-line errors."""

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from pipeline.errors import ConfigError, StageError
from pipeline.onnx_utils import save_model
from pipeline.stages import quantize as stage
from pipeline.stages import runner
from pipeline.stages.runner import build_spec

LOG = logging.getLogger("test.quantize")


def _cnn(custom_op=False):
    rng = np.random.default_rng(0)

    def init(name, shape, scale):
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r1"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    opsets = [helper.make_opsetid("", 17)]
    if custom_op:  # an op no runtime knows: quantization must fail and say so
        nodes[1] = helper.make_node("Swish", ["c1"], ["r1"], name="relu1", domain="com.example")
        opsets.append(helper.make_opsetid("com.example", 1))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        [init("w1", (8, 3, 3, 3), 0.3), init("b1", (8,), 0.1), init("fc_w", (5, 8), 0.3), init("fc_b", (5,), 0.1)],
    )
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "LOG_ROOT", tmp_path / "logs")
    passes = tmp_path / "artifacts" / "builds" / "b" / "passes"
    save_model(_cnn(), passes / "model.onnx")

    def write(quantization):
        params = {
            "models": {"m": {"framework": "onnx", "path": "m.onnx", "watch": "m.onnx", "export": {"opset": None},
                             "inputs": [{"name": "x", "shape": ["batch", 3, 8, 8], "range": [-1.0, 1.0]}]}},
            "builds": {"b": {"model": "m", "quantization": quantization, "target": {"name": "cpu"}}},
        }
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        return path

    return tmp_path, passes, write


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _errors(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_cli_static_int8(project, capsys):
    root, passes, write = project
    params = write({"name": "static_int8", "format": "qdq", "per_channel": True, "calibration": {"num_samples": 24}})
    out = root / "artifacts" / "builds" / "b" / "model"
    code = stage.main(["--params", str(params), "--build", "b", "--input", str(passes), "--out", str(out)])
    assert code == 0, _errors(capsys)
    report = json.loads((out / "quantization.json").read_text())
    assert report["quantizer"] == "static_int8" and report["calibration_samples"] == 24
    assert report["params"]["calibration"]["method"] == "minmax" and report["params"]["reduce_range"] == "auto"
    assert report["info"]["activation_type"] in ("uint8", "int8") and "isa_basis" in report["info"]
    assert report["nodes_before"] == 5 and report["nodes_after"] > 5 and report["ops"]["QuantizeLinear"] > 0
    assert "seconds" not in report  # artifact files are a function of the recipe (timings go to the log)
    x = np.random.default_rng(3).uniform(-1, 1, (8, 3, 8, 8)).astype(np.float32)
    ref, got = _run(passes / "model.onnx", x), _run(out / "model.onnx", x)
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


@pytest.mark.parametrize("quantization", [{"name": "none"}, {"name": "dynamic_int8", "per_channel": False}])
def test_quantize_build_function(project, quantization):
    root, passes, write = project
    build, spec = build_spec(yaml.safe_load(write(quantization).read_text()), "b")
    result = stage.quantize_build(build, spec, passes, root / "out", LOG, build_name="b")
    assert result["quantizer"] == quantization["name"]
    assert json.loads((root / "out" / "quantization.json").read_text())["nodes_before"] == 5
    x = np.ones((2, 3, 8, 8), np.float32)
    np.testing.assert_allclose(_run(root / "out" / "model.onnx", x), _run(passes / "model.onnx", x), atol=0.05)


def test_failing_quantizer_keeps_the_earlier_result(project, capsys):
    root, passes, write = project
    out = root / "out"
    args = ["--params", str(write({"name": "none"})), "--build", "b", "--input", str(passes), "--out", str(out)]
    assert stage.main(args) == 0
    earlier = (out / "model.onnx").read_bytes()
    save_model(_cnn(custom_op=True), passes / "model.onnx")
    args[1] = str(write({"name": "static_int8", "calibration": {"num_samples": 4}}))
    assert stage.main(args) == 1
    err = _errors(capsys)
    assert len(err) == 1 and err[0].startswith("error: quantize stage, static_int8 failed: ")
    assert "Swish" in err[0] and "full log: " in err[0]
    assert (out / "model.onnx").read_bytes() == earlier
    assert not [p for p in root.iterdir() if p.name.startswith(".out")]


def test_failure_leaves_no_model(project):
    root, passes, write = project
    save_model(_cnn(custom_op=True), passes / "model.onnx")
    build, spec = build_spec(yaml.safe_load(write({"name": "dynamic_int8"}).read_text()), "b")
    with pytest.raises(StageError, match="quantize stage, dynamic_int8 failed"):
        stage.quantize_build(build, spec, passes, root / "fresh", LOG)
    assert not (root / "fresh").exists()


def test_unknown_node_is_a_config_error_naming_the_build_key(project, capsys):
    root, passes, write = project
    params = write({"name": "static_int8", "nodes_to_exclude": ["conv_1"]})
    assert stage.main(["--params", str(params), "--build", "b", "--input", str(passes), "--out", str(root / "o")]) == 1
    err = _errors(capsys)
    assert len(err) == 1 and "key 'builds.b.quantization.nodes_to_exclude'" in err[0]
    assert "conv1" in err[0] and str(params) in err[0]


def test_bad_params_name_key_and_choices(project, capsys):
    root, passes, write = project
    params = write({"name": "static_int8", "calibration": {"method": "kl"}})
    assert stage.main(["--params", str(params), "--build", "b", "--input", str(passes), "--out", str(root / "o")]) == 1
    err = _errors(capsys)
    assert len(err) == 1 and "builds.b.quantization.calibration.method" in err[0] and "'kl'" in err[0]


def test_missing_input(project):
    root, passes, write = project
    build, spec = build_spec(yaml.safe_load(write({"name": "none"}).read_text()), "b")
    with pytest.raises(StageError, match="quantize stage, input failed: no model at"):
        stage.quantize_build(build, spec, root / "nowhere", root / "out", LOG)


def test_unknown_quantizer(project):
    root, passes, write = project
    with pytest.raises(ConfigError, match=r"builds.b.quantization.name.*dynamic_int8, none, static_int8"):
        build_spec(yaml.safe_load(write({"name": "fp8"}).read_text()), "b")
