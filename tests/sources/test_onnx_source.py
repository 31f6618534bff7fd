"""The ONNX-file source: snapshot, external data, opset upgrade, reference outputs, and bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.errors import ConfigError, StageError
from pipeline.models import packaged
from pipeline.schema import validate_model
from pipeline.sources import onnx_source
from pipeline.sources.common import read_reference

LOG = logging.getLogger("test.onnx_source")
SQUEEZENET = "pkg://onnx/backend/test/data/light/light_squeezenet.onnx"


def _spec(path, **extra):
    data = {"framework": "onnx", "path": str(path), "watch": str(path), "reference": {"num_samples": 32}}
    data.update(extra)
    return validate_model(data, "models.m")


def _mlp(opset: int = 11) -> onnx.ModelProto:
    """x [batch, 16] -> MatMul(W 16x32) + b -> Relu -> MatMul(V 32x4) -> y [batch, 4]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(16, 32)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=(32,)).astype(np.float32), "b"),
        numpy_helper.from_array(rng.normal(size=(32, 4)).astype(np.float32), "V"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "V"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def _save_external(model: onnx.ModelProto, folder: Path, location: str = "weights.bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mlp.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location=location, size_threshold=0)
    return path


@pytest.fixture
def external_mlp(tmp_path) -> Path:
    return _save_external(_mlp(), tmp_path / "src")


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


# ---------------------------------------------------------------------------------------------
# Working paths
# ---------------------------------------------------------------------------------------------


def test_external_data_model_survives_prepare_and_export(external_mlp, tmp_path):
    spec = _spec(external_mlp, export={"opset": 17, "dims": {"N": 3}})
    info = onnx_source.prepare(spec, tmp_path / "source", LOG)
    assert info["external_data"] == ["weights.bin"]
    assert (tmp_path / "source" / "weights.bin").is_file()

    out = onnx_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    model_file = tmp_path / "export" / "model.onnx"
    assert (tmp_path / "export" / "model.onnx.data").is_file()
    assert info_external(model_file) == {"model.onnx.data"}
    assert out["external_data"] == ["model.onnx.data"]
    assert out["changes"]["opset"] == {"from": 11, "to": 17}
    # the graph file holds no weights
    assert model_file.stat().st_size < 2000

    inputs, outputs, labels = read_reference(tmp_path / "export")
    assert inputs["x"].shape == (32, 16) and labels is None
    # reference = the unmodified source in ONNX Runtime
    np.testing.assert_allclose(outputs["y"], _run(external_mlp, inputs["x"]), rtol=1e-6, atol=1e-6)

    # `dvc checkout` elsewhere: the artifact folder moved whole still loads its weights
    moved = shutil.copytree(tmp_path / "export", tmp_path / "elsewhere" / "export")
    shutil.rmtree(tmp_path / "export")
    shutil.rmtree(tmp_path / "source")
    np.testing.assert_allclose(_run(moved / "model.onnx", inputs["x"]), outputs["y"], rtol=1e-5, atol=1e-5)


def info_external(path: Path) -> set[str]:
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    return {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}


def test_inline_model_stays_inline_and_input_spec_comes_from_graph(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), str(path))
    spec = _spec(path, export={"opset": None, "dims": {"N": 2}})
    onnx_source.prepare(spec, tmp_path / "source", LOG)
    info = onnx_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert not (tmp_path / "export" / "model.onnx.data").exists()
    assert info["exporter"] == "copy" and info["opset"] == 11
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["N", 16]}]


def test_opset_upgrade_keeps_semantics(tmp_path):
    """Softmax changed meaning at opset 13 (axis vs. coerced 2-D): the converter must keep outputs."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=1)], "softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    path = tmp_path / "softmax.onnx"
    onnx.save(model, str(path))
    spec = _spec(path, export={"opset": 18}, inputs=[{"name": "x", "shape": ["batch", 4, 3], "range": [-3, 3]}])
    onnx_source.prepare(spec, tmp_path / "source", LOG)
    info = onnx_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    upgraded = onnx.load(str(tmp_path / "export" / "model.onnx"))
    assert upgraded.opset_import[0].version == 18
    assert info["changes"]["opset"] == {"from": 9, "to": 18}
    inputs, outputs, _ = read_reference(tmp_path / "export")
    # opset-9 semantics: softmax over the 12 values of each sample
    x = inputs["x"].reshape(32, 12)
    want = (np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)).reshape(32, 4, 3)
    np.testing.assert_allclose(outputs["y"], want, rtol=1e-5)
    np.testing.assert_allclose(_run(tmp_path / "export" / "model.onnx", inputs["x"]), want, rtol=1e-5)


def test_packaged_squeezenet_upgrades_from_opset_9(tmp_path):
    spec = _spec(SQUEEZENET, export={"opset": 17})
    info = onnx_source.prepare(spec, tmp_path / "source", LOG)
    assert info["opset"] == 9 and info["package_version"] == onnx.__version__
    out = onnx_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert out["changes"]["opset"] == {"from": 9, "to": 17}
    assert out["changes"]["initializer_inputs_removed"] > 0
    assert [i["name"] for i in out["inputs"]] == ["data_0"]
    model = onnx.load(str(tmp_path / "export" / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    inputs, outputs, _ = read_reference(tmp_path / "export")
    got = np.concatenate([_run(tmp_path / "export" / "model.onnx", inputs["data_0"][i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(got, outputs["softmaxout_1"][:4], rtol=1e-5, atol=1e-7)


def test_unnamed_batch_dim_gets_the_spec_name(tmp_path):
    model = _mlp()
    model.graph.input[0].type.tensor_type.shape.dim[0].Clear()  # unknown, unnamed
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    spec = _spec(path)
    onnx_source.prepare(spec, tmp_path / "source", LOG)
    info = onnx_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["inputs"][0]["shape"] == ["batch", 16]


def test_dynamic_false_fixes_input_dims(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_mlp(), str(path))
    spec = _spec(path, export={"dynamic": False, "dims": {"N": 1}})
    onnx_source.prepare(spec, tmp_path / "source", LOG)
    info = onnx_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["inputs"][0]["shape"] == [1, 16]


# ---------------------------------------------------------------------------------------------
# pkg:// paths
# ---------------------------------------------------------------------------------------------


def test_packaged_resolution():
    path = packaged.resolve(SQUEEZENET)
    assert path.is_file() and path.name == "light_squeezenet.onnx"
    assert packaged.resolve("some/plain.onnx") == Path("some/plain.onnx")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("pkg://no_such_package_xyz/m.onnx", "not installed"),
        ("pkg://onnx/no/such/file.onnx", "ships no file"),
        ("pkg://onnx/../etc/passwd", "relative file path"),
        ("pkg://onnx/", "relative file path"),
        ("pkg://not-a-name/m.onnx", "not a package name"),
    ],
)
def test_packaged_bad_paths(path, message):
    with pytest.raises(ConfigError, match=message) as err:
        packaged.resolve(path)
    assert err.value.key == "path"


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found") as err:
        onnx_source.prepare(_spec(tmp_path / "nope.onnx"), tmp_path / "source", LOG)
    assert err.value.key == "path"


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(StageError, match="corrupt or truncated") as err:
        onnx_source.prepare(_spec(path), tmp_path / "source", LOG)
    _one_line(err.value)
    assert not (tmp_path / "source").exists()


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.6, 0.9])
def test_truncated_file(tmp_path, fraction):
    full = tmp_path / "full.onnx"
    onnx.save(_mlp(), str(full))
    data = full.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(StageError) as err:
        onnx_source.prepare(_spec(path), tmp_path / "source", LOG)
    assert "corrupt or truncated" in _one_line(err.value) or "onnx.checker" in str(err.value)


def test_missing_external_data(external_mlp, tmp_path):
    (external_mlp.parent / "weights.bin").unlink()
    with pytest.raises(StageError, match="external data file 'weights.bin' is missing"):
        onnx_source.prepare(_spec(external_mlp), tmp_path / "source", LOG)


def test_truncated_external_data(external_mlp, tmp_path):
    data = external_mlp.parent / "weights.bin"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(StageError, match="truncated"):
        onnx_source.prepare(_spec(external_mlp), tmp_path / "source", LOG)


def _point_weights_at(path: Path, location: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "sub/../../outside.bin"])
def test_escaping_external_data_is_refused(external_mlp, tmp_path, location):
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    _point_weights_at(external_mlp, location)
    with pytest.raises(StageError, match="refused") as err:
        onnx_source.prepare(_spec(external_mlp), tmp_path / "source", LOG)
    assert location in _one_line(err.value)


def test_symlink_escaping_the_folder_is_refused(external_mlp, tmp_path):
    outside = tmp_path / "outside.bin"
    shutil.move(external_mlp.parent / "weights.bin", outside)
    (external_mlp.parent / "weights.bin").symlink_to(outside)
    with pytest.raises(StageError, match="outside the model's folder"):
        onnx_source.prepare(_spec(external_mlp), tmp_path / "source", LOG)


def test_checker_rejects_broken_graph(tmp_path):
    model = _mlp()
    model.graph.node[1].input[0] = "undefined_tensor"
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(StageError, match="onnx.checker"):
        onnx_source.prepare(_spec(path), tmp_path / "source", LOG)


@pytest.mark.parametrize(
    ("inputs", "key", "message"),
    [
        ([{"name": "image", "shape": ["N", 16]}], "inputs[0].name", "'image' is not an input"),
        ([{"name": "x", "shape": ["N", 8]}], "inputs[0].shape", "axis 1 is fixed at 16, not 8"),
        ([{"name": "x", "shape": ["N", 4, 4]}], "inputs[0].shape", "rank"),
        ([{"name": "x", "dtype": "int64", "shape": ["N", 16]}], "inputs[0].dtype", "takes float32"),
    ],
)
def test_declared_inputs_must_match_the_graph(tmp_path, inputs, key, message):
    path = tmp_path / "m.onnx"
    onnx.save(_mlp(), str(path))
    spec = _spec(path, inputs=inputs, export={"dims": {"N": 1}})
    with pytest.raises(ConfigError, match=message) as err:
        onnx_source.prepare(spec, tmp_path / "source", LOG)
    assert err.value.key == key
    assert "'x'" in str(err.value) or "x" in (err.value.choices or [])


def test_symbolic_dim_without_value(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_mlp(), str(path))
    with pytest.raises(ConfigError, match="export.dims.N") as err:
        onnx_source.prepare(_spec(path), tmp_path / "source", LOG)  # dims default to {batch: 1}
    assert err.value.key == "export.dims"


def test_failing_opset_conversion_is_one_line(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Gelu", ["x"], ["y"])], "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    path = tmp_path / "gelu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    spec = _spec(path, export={"opset": 11})
    onnx_source.prepare(spec, tmp_path / "source", LOG)
    with pytest.raises(StageError, match=r"opset conversion failed: .*20 -> 11.*Gelu") as err:
        onnx_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    _one_line(err.value)
    assert not (tmp_path / "export").exists()
