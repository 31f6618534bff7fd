"""pipeline.sources.torch_source: prepare (snapshot / train / fine-tune) and export on both exporters,
compared numerically with ONNX Runtime, plus the error paths."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError, StageError
from pipeline.schema import validate_model
from pipeline.sources import common, torch_source

LOG = logging.getLogger("test.torch_source")
TEXT_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


# Models used through their dotted path (``_target_: <this module>.<name>``).
class DataDependent(nn.Module):
    """Branches on a tensor value: torch.export refuses it; the TorchScript tracer bakes one branch in."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if y.sum() > 0:
            return y * 2
        return y


class ShapeBranch(nn.Module):
    """Branches on the batch size in Python: the TorchScript tracer bakes in the example's branch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if x.shape[0] == 2:  # the export example has batch 2 (dynamic dims get at least 2)
            return y * 2
        return y


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.lin(x)
        return {"scores": y, "probs": y.softmax(dim=-1)}


def not_a_module() -> str:
    return "nope"


def _cnn(**over: Any) -> dict[str, Any]:
    spec = {
        "framework": "torch",
        "factory": {"_target_": "pipeline.models.digits_cnn.build", "width": 8},
        "watch": "pipeline/models/digits_cnn.py",
        "inputs": [{"name": "input", "shape": "[batch, 1, 8, 8]"}],
        "outputs": ["logits"],
        "reference": {"dataset": {"_target_": "pipeline.data.digits.load", "split": "test"}, "num_samples": 40},
    }
    spec.update(over)
    return spec


def _text(**over: Any) -> dict[str, Any]:
    spec = {
        "framework": "torch",
        "factory": {"_target_": "pipeline.models.text.build"},
        "watch": "pipeline/models/text.py",
        "inputs": [{"name": n, "dtype": "int64", "shape": "[batch, seq]", "range": [0, 2]} for n in TEXT_INPUTS],
        "export": {"dims": {"batch": 1, "seq": 16}},
        "reference": {"dataset": {"_target_": "pipeline.data.text.load", "split": "test"}, "num_samples": 40},
    }
    spec.update(over)
    return spec


def _small(**over: Any) -> dict[str, Any]:
    spec = {
        "framework": "torch",
        "watch": "tests",
        "inputs": [{"name": "x", "shape": "[batch, 4]", "range": [-1, 1]}],
        "reference": {"num_samples": 32},
    }
    spec.update(over)
    return spec


def _spec(data: dict[str, Any]):
    return validate_model(data, "models.m")


def _prepare_export(tmp_path: Path, data: dict[str, Any]) -> tuple[Any, Path]:
    spec = _spec(data)
    torch_source.prepare(spec, tmp_path / "source", LOG)
    torch_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    return spec, tmp_path / "export"


def _module(spec, source: Path) -> nn.Module:
    module = torch_source.build_module(spec)
    module.load_state_dict(torch.load(source / "model.pt", weights_only=True))
    return module.eval()


# ---------------------------------------------------------------------------------------------
# export: both exporters, numerical comparison, dynamic dims
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_cnn_exports_with_dynamic_batch(tmp_path: Path, exporter: str) -> None:
    spec, out = _prepare_export(tmp_path, _cnn(export={"exporter": exporter, "opset": 18}))
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx", "reference.npz"]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    module = _module(spec, tmp_path / "source")
    for batch in (1, 5):
        x = np.random.default_rng(batch).random((batch, 1, 8, 8), dtype=np.float32)
        (got,) = sess.run(None, {"input": x})
        with torch.no_grad():
            want = module(input=torch.from_numpy(x)).numpy()
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    info = json.loads((out / "export.json").read_text())
    assert info["exporter"] == exporter and info["opset"] == 18
    assert info["dynamic_dims"] == ["batch"] and info["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert info["verification"]["max_abs_err"] <= 1e-4 and info["torch_version"] == torch.__version__


def test_export_bytes_do_not_depend_on_the_checkout_folder(tmp_path: Path) -> None:
    """The dynamo exporter writes stack traces with absolute paths into node metadata; the export
    drops them, so the same recipe gives the same model.onnx wherever the project lives."""
    data = _cnn(export={"exporter": "dynamo", "opset": 18})
    _, first = _prepare_export(tmp_path / "a", data)
    _, second = _prepare_export(tmp_path / "b" / "elsewhere", data)
    proto = onnx.load(str(first / "model.onnx"))
    assert all(len(node.metadata_props) == 0 for node in proto.graph.node)
    assert str(Path.cwd()).encode() not in (first / "model.onnx").read_bytes()
    assert (first / "model.onnx").read_bytes() == (second / "model.onnx").read_bytes()


def test_strip_node_metadata_counts_what_it_drops() -> None:
    from onnx import helper

    node = helper.make_node("Relu", ["x"], ["y"])
    node.metadata_props.add(key="pkg.torch.onnx.stack_trace", value="File /somewhere/model.py")
    graph = helper.make_graph([node], "g", [], [])
    proto = helper.make_model(graph)
    assert torch_source.strip_node_metadata(proto) == 1
    assert len(proto.graph.node[0].metadata_props) == 0


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_multi_input_int64_model_exports_by_name(tmp_path: Path, exporter: str) -> None:
    spec, out = _prepare_export(tmp_path, _text(export={"exporter": exporter, "opset": 18, "dims": {"batch": 1, "seq": 16}}))
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in sess.get_inputs()] == [(n, "tensor(int64)") for n in TEXT_INPUTS]
    assert [i.shape for i in sess.get_inputs()] == [["batch", "seq"]] * 3
    module = _module(spec, tmp_path / "source")
    from pipeline.data import text

    for batch, seq in ((1, 9), (5, 16)):  # batch and sequence length both differ from the export example
        data = text.load("val", num_samples=batch, seq_len=seq).inputs
        (got,) = sess.run(None, data)
        with torch.no_grad():
            want = module(**{k: torch.from_numpy(v) for k, v in data.items()}).numpy()
        assert got.shape == (batch, 4)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_fixed_dims_when_not_dynamic(tmp_path: Path) -> None:
    _, out = _prepare_export(tmp_path, _cnn(export={"dynamic": False, "dims": {"batch": 3}}))
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [3, 1, 8, 8]
    info = json.loads((out / "export.json").read_text())
    assert info["dynamic_dims"] == [] and info["verification"]["samples"] == 40  # 40 = 13 runs of 3, padded


def test_dict_outputs_get_default_names(tmp_path: Path) -> None:
    _, out = _prepare_export(tmp_path, _small(factory={"_target_": f"{__name__}.TwoOutputs"}))
    inputs, outputs, labels = common.read_reference(out)
    assert sorted(outputs) == ["output_0", "output_1"] and labels is None
    np.testing.assert_allclose(outputs["output_1"].sum(axis=1), 1.0, rtol=1e-5)


def test_reference_npz_holds_torch_outputs_and_labels(tmp_path: Path) -> None:
    spec, out = _prepare_export(tmp_path, _cnn())
    inputs, outputs, labels = common.read_reference(out)
    from pipeline.data import digits

    test = digits.load("test").take(40)
    np.testing.assert_array_equal(inputs["input"], test.inputs["input"])
    np.testing.assert_array_equal(labels, test.labels)
    with torch.no_grad():
        want = _module(spec, tmp_path / "source")(input=torch.from_numpy(inputs["input"])).numpy()
    np.testing.assert_array_equal(outputs["logits"], want)  # PyTorch's own outputs, bit for bit


def test_reference_without_dataset_draws_from_ranges(tmp_path: Path) -> None:
    linear = {"_target_": "torch.nn.Linear", "in_features": 4, "out_features": 2}  # forward(input)
    inputs_spec = [{"name": "input", "shape": "[batch, 4]", "range": [-1, 1]}]
    _, out = _prepare_export(tmp_path, _small(factory=linear, inputs=inputs_spec))
    inputs, outputs, labels = common.read_reference(out)
    x = inputs["input"]
    assert x.shape == (32, 4) and outputs["output_0"].shape == (32, 2) and labels is None
    assert x.min() >= -1 and x.max() < 1 and x.min() < 0


# ---------------------------------------------------------------------------------------------
# export errors
# ---------------------------------------------------------------------------------------------


def test_exporter_failure_names_step_and_cause(tmp_path: Path) -> None:
    spec = _spec(_small(factory={"_target_": f"{__name__}.DataDependent"}))
    torch_source.prepare(spec, tmp_path / "source", LOG)
    with pytest.raises(StageError) as err:
        torch_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert err.value.step == "torch.onnx.export (dynamo)"
    assert "data-dependent" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "export").exists()


def test_traced_wrong_branch_is_caught_by_verification(tmp_path: Path) -> None:
    """The TorchScript tracer records one branch; ONNX Runtime then disagrees on other inputs."""
    spec = _spec(_small(factory={"_target_": f"{__name__}.ShapeBranch"}, export={"exporter": "torchscript", "opset": 17}))
    torch_source.prepare(spec, tmp_path / "source", LOG)
    with pytest.raises(StageError, match=r"max abs err [0-9.e+-]+ > atol 0\.0001") as err:
        torch_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert err.value.step == "verify"
    assert not (tmp_path / "export").exists()


def test_mismatch_keeps_earlier_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, out = _prepare_export(tmp_path, _cnn())
    before = (out / "model.onnx").read_bytes()
    real = torch_source.torch_outputs
    monkeypatch.setattr(torch_source, "torch_outputs", lambda *a: [o + 1e-3 for o in real(*a)])
    with pytest.raises(StageError) as err:
        torch_source.export(spec, tmp_path / "source", out, LOG)
    text = str(err.value)
    assert "max abs err 0.001 > atol 0.0001" in text and "max rel err" in text and "\n" not in text
    assert (out / "model.onnx").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]  # no temp dir left


def test_export_without_prepared_source(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="run the prepare stage first") as err:
        torch_source.export(_spec(_cnn()), tmp_path / "missing", tmp_path / "export", LOG)
    assert err.value.stage == "export"


def test_export_with_changed_factory_is_a_clear_error(tmp_path: Path) -> None:
    torch_source.prepare(_spec(_cnn()), tmp_path / "source", LOG)
    wider = _cnn(factory={"_target_": "pipeline.models.digits_cnn.build", "width": 16})
    with pytest.raises(StageError, match="shape mismatch for"):
        torch_source.export(_spec(wider), tmp_path / "source", tmp_path / "export", LOG)


# ---------------------------------------------------------------------------------------------
# prepare: snapshot, training, fine-tuning, checkpoints
# ---------------------------------------------------------------------------------------------

TRAIN = {
    "dataset": {"_target_": "pipeline.data.digits.load", "split": "train"},
    "val_dataset": {"_target_": "pipeline.data.digits.load", "split": "val"},
    "epochs": 1,
    "batch_size": 64,
    "lr": 3e-3,
}


def test_training_writes_byte_identical_checkpoints(tmp_path: Path) -> None:
    spec = _spec(_cnn(train=TRAIN))
    m1 = torch_source.prepare(spec, tmp_path / "a", LOG)
    m2 = torch_source.prepare(spec, tmp_path / "b" / "source", LOG)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "source" / "model.pt").read_bytes()
    assert m1["trained"] is True and m1["fine_tuned"] is False and m1["epochs"] == 1
    assert {k: v for k, v in m1.items() if k != "seconds"} == {k: v for k, v in m2.items() if k != "seconds"}
    assert m1["val_top1"] > 0.3


def test_snapshot_is_seeded_and_untrained(tmp_path: Path) -> None:
    spec = _spec(_cnn())
    assert torch_source.prepare(spec, tmp_path / "a", LOG)["trained"] is False
    torch_source.prepare(spec, tmp_path / "b", LOG)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()


def test_checkpoint_snapshot_and_fine_tuning(tmp_path: Path) -> None:
    trained = _spec(_cnn(train={**TRAIN, "epochs": 2}))
    torch_source.prepare(trained, tmp_path / "trained", LOG)
    ckpt = tmp_path / "ckpt.pt"
    state = torch.load(tmp_path / "trained" / "model.pt", weights_only=True)
    torch.save({"state_dict": state}, ckpt)  # a wrapped state dict is accepted too

    snap = _spec(_cnn(checkpoint=str(ckpt)))
    torch_source.prepare(snap, tmp_path / "snap", LOG)
    assert (tmp_path / "snap" / "model.pt").read_bytes() == (tmp_path / "trained" / "model.pt").read_bytes()

    tune = _spec(_cnn(checkpoint=str(ckpt), train={**TRAIN, "lr": 1e-4}))
    tuned = torch_source.prepare(tune, tmp_path / "tuned", LOG)
    scratch = torch_source.prepare(_spec(_cnn(train={**TRAIN, "lr": 1e-4})), tmp_path / "scratch", LOG)
    assert tuned["fine_tuned"] is True
    assert tuned["val_top1"] > scratch["val_top1"]  # it started from the trained weights
    new = torch.load(tmp_path / "tuned" / "model.pt", weights_only=True)
    assert any(not torch.equal(new[k], state[k]) for k in state)


def test_missing_checkpoint_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="checkpoint file not found") as err:
        torch_source.prepare(_spec(_cnn(checkpoint=str(tmp_path / "nope.pt"))), tmp_path / "out", LOG)
    assert err.value.key == "checkpoint"
    qualified = common.qualify_config_error(err.value, "cnn", "params.yaml")
    assert "params.yaml, key 'models.cnn.checkpoint'" in str(qualified)
    assert not (tmp_path / "out").exists()


def test_checkpoint_shape_mismatch(tmp_path: Path) -> None:
    ckpt = tmp_path / "wide.pt"
    from pipeline.models.digits_cnn import build

    torch.save(build(width=16).state_dict(), ckpt)
    with pytest.raises(ConfigError, match=r"shape mismatch for \d+ tensor\(s\): features\.0\.0\.weight \(checkpoint \[16, 1, 3, 3\], model \[8, 1, 3, 3\]\)") as err:
        torch_source.prepare(_spec(_cnn(checkpoint=str(ckpt))), tmp_path / "out", LOG)
    assert err.value.key == "checkpoint"


def test_checkpoint_that_is_not_a_state_dict(tmp_path: Path) -> None:
    weird = tmp_path / "list.pt"
    torch.save([1, 2, 3], weird)
    with pytest.raises(ConfigError, match="does not hold a state dict"):
        torch_source.prepare(_spec(_cnn(checkpoint=str(weird))), tmp_path / "out", LOG)
    pickled = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled)  # a whole pickled module: refused by weights_only=True
    with pytest.raises(ConfigError, match="weights_only=True"):
        torch_source.prepare(_spec(_cnn(checkpoint=str(pickled))), tmp_path / "out", LOG)


# ---------------------------------------------------------------------------------------------
# factory errors
# ---------------------------------------------------------------------------------------------


def test_factory_module_that_cannot_be_imported_fails_validation() -> None:
    with pytest.raises(ConfigError, match="cannot import 'pipeline.models.nosuch'") as err:
        _spec(_cnn(factory={"_target_": "pipeline.models.nosuch.build"}))
    assert err.value.key == "models.m.factory._target_"


@pytest.mark.parametrize(
    ("factory", "key", "message"),
    [
        ({"_target_": "pipeline.models.digits_cnn.nosuch"}, "factory._target_", "has no attribute 'nosuch'"),
        ({"_target_": f"{__name__}.not_a_module"}, "factory._target_", "returned str, expected a torch.nn.Module"),
        ({"_target_": "pipeline.models.digits_cnn.build", "depth": 3}, "factory", "unexpected keyword argument 'depth'"),
    ],
)
def test_factory_errors(tmp_path: Path, factory: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        torch_source.prepare(_spec(_cnn(factory=factory)), tmp_path / "out", LOG)
    assert err.value.key == key


def test_input_names_must_match_forward(tmp_path: Path) -> None:
    spec = _spec(_cnn(inputs=[{"name": "pixels", "shape": "[batch, 1, 8, 8]"}]))
    with pytest.raises(ConfigError, match=r"input\(s\) \['pixels'\] are not arguments") as err:
        torch_source.prepare(spec, tmp_path / "out", LOG)
    assert err.value.key == "inputs" and err.value.choices == ["input"]
