"""The passes stage: CLI entry point, passes.json, atomic output, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from pipeline.errors import StageError
from pipeline.stages import passes as stage
from pipeline.stages import runner
from pipeline.stages.runner import build_spec

ROOT = Path(__file__).resolve().parents[2]


def _model(opset=17):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (4, 8)).astype(np.float32), "w")
    s = numpy_helper.from_array(np.ones(8, np.float32), "s")
    b = numpy_helper.from_array(np.zeros(8, np.float32), "b")
    nodes = [
        helper.make_node("Identity", ["x"], ["xi"], name="id"),
        helper.make_node("MatMul", ["xi", "w"], ["h"], name="mm"),
        helper.make_node("LayerNormalization", ["h", "s", "b"], ["y"], name="ln"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], [w, s, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "LOG_ROOT", tmp_path / "logs")
    export = tmp_path / "artifacts" / "models" / "m" / "export"
    export.mkdir(parents=True)
    onnx.save(_model(), str(export / "model.onnx"))

    def write(passes):
        params = {
            "models": {"m": {"framework": "onnx", "path": "m.onnx", "watch": "m.onnx", "export": {"opset": None}}},
            "builds": {"b": {"model": "m", "passes": passes, "quantization": {"name": "none"}, "target": {"name": "cpu"}}},
        }
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        return path

    return tmp_path, export, write


def _run(x, path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_cli_writes_model_and_passes_json(project, capsys):
    root, export, write = project
    params = write([{"name": "shape_inference"}, {"name": "onnxoptimizer", "params": {"passes": ["eliminate_identity"]}},
                    {"name": "ort_optimize", "params": {"level": "extended"}}])
    out = root / "artifacts" / "builds" / "b" / "passes"
    code = stage.main(["--params", str(params), "--build", "b", "--export", str(export), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "passes.json").read_text())
    assert [p["name"] for p in report["passes"]] == ["shape_inference", "onnxoptimizer", "ort_optimize"]
    assert report["passes"][1]["changed"] and report["passes"][1]["nodes_after"] == 2
    assert report["passes"][2]["info"]["target_specific"] is True
    assert report["totals"]["nodes_before"] == 3 and report["totals"]["num_passes"] == 3
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(x, out / "model.onnx"), _run(x, export / "model.onnx"), rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["passes"]  # no temp dirs left behind


def test_run_passes_function(project):
    root, export, write = project
    build, spec = build_spec(yaml.safe_load(write([{"name": "opset", "params": {"version": 18}}]).read_text()), "b")
    import logging

    result = stage.run_passes(build, spec, export, root / "out", logging.getLogger("t"))
    assert result["totals"]["opsets_after"] == {"ai.onnx": 18}
    assert json.loads((root / "out" / "passes.json").read_text())["passes"][0]["info"] == {"from": 17, "to": 18}


def test_failing_pass_keeps_the_earlier_result(project, capsys):
    root, export, write = project
    out = root / "out"
    args = ["--build", "b", "--export", str(export), "--out", str(out)]
    assert stage.main(["--params", str(write([{"name": "shape_inference"}])), *args]) == 0
    earlier = (out / "model.onnx").read_bytes()
    # LayerNormalization has no version below 17: the conversion must fail, after two passes ran
    failing = write([{"name": "shape_inference"}, {"name": "prune", "params": {"sparsity": 0.0}},
                     {"name": "opset", "params": {"version": 13}}])
    capsys.readouterr()
    assert stage.main(["--params", str(failing), *args]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1
    assert err[0].startswith("error: passes stage, opset (pass 3 of 3) failed: ValueError: onnx.version_converter "
                             "cannot convert opset 17 -> 13")
    assert "passes already run: shape_inference, prune" in err[0] and "full log: " in err[0]
    assert (out / "model.onnx").read_bytes() == earlier
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".out")) == []


def test_failure_leaves_no_model(project, capsys):
    root, export, write = project
    out = root / "fresh"
    params = write([{"name": "opset", "params": {"version": 13}}])
    assert stage.main(["--params", str(params), "--build", "b", "--export", str(export), "--out", str(out)]) == 1
    assert not out.exists()


def test_unknown_pass_is_one_line_config_error(project, capsys):
    root, export, write = project
    params = write([{"name": "shape_inference"}, {"name": "fold_everything"}])
    assert stage.main(["--params", str(params), "--build", "b", "--export", str(export), "--out", str(root / "o")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "key 'builds.b.passes[1].name'" in err[0] and "fold_everything" in err[0]
    assert "onnxoptimizer, opset, ort_optimize, prune, shape_inference" in err[0]


def test_missing_export_is_a_stage_error(project):
    root, export, write = project
    build, spec = build_spec(yaml.safe_load(write([]).read_text()), "b")
    import logging

    with pytest.raises(StageError, match="passes stage, input failed: no model at"):
        stage.run_passes(build, spec, root / "nowhere", root / "out", logging.getLogger("t"))


def test_entry_points_import_neither_torch_nor_tensorflow():
    code = (
        "import sys, pipeline.stages.passes, pipeline.stages.quantize, pipeline.passes, pipeline.quantization\n"
        "from pipeline.schema import validate_pass\n"
        "validate_pass({'name': 'onnxoptimizer', 'params': {'passes': ['eliminate_identity']}}, 'p')\n"
        "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
