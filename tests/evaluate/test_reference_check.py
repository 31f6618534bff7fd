"""Degenerate references (pipeline.evaluate.reference_check): flagged at export (export.json and a
warning) and at evaluate (fidelity.reference_degenerate), where they fail every gate measured
against the reference."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.evaluate.metrics import evaluate_build
from pipeline.evaluate.reference_check import degenerate_outputs, output_reasons
from pipeline.schema import BuildSpec, ModelSpec

LOG = logging.getLogger("test.refcheck")


def test_reasons_by_hand():
    rng = np.random.default_rng(0)
    varied = rng.normal(size=(8, 4))
    softmax_const = np.full((8, 1000), 1e-3, dtype=np.float32)  # a random softmax head
    zeros = np.zeros((8, 3))
    bad = varied.copy()
    bad[3, 1] = np.inf
    assert output_reasons(varied) == []
    assert output_reasons(softmax_const) == ["constant over samples"]
    assert output_reasons(zeros) == ["constant over samples", "all zero"]
    assert output_reasons(bad) == ["non-finite values"]
    assert output_reasons(np.full((4, 2), np.nan)) == ["non-finite values"]
    assert output_reasons(np.arange(6).reshape(3, 2)) == []  # integer outputs are checked too
    # equal within each sample but not across samples is fine; a stream's [samples, steps, ...] too
    assert output_reasons(np.repeat(np.arange(5.0)[:, None], 3, axis=1)) == []
    assert output_reasons(np.tile(np.arange(6.0).reshape(1, 3, 2), (4, 1, 1))) == ["constant over samples"]
    assert degenerate_outputs({"ok": varied, "probs": softmax_const, "z": zeros}) == {
        "probs": ["constant over samples"],
        "z": ["constant over samples", "all zero"],
    }


def _constant_head(path):
    """probs = 0 * x + 1e-3 on [batch, 4]: the same output for every sample."""
    nodes = [helper.make_node("Mul", ["x", "ZERO"], ["t"]), helper.make_node("Add", ["t", "C"], ["probs"])]
    graph = helper.make_graph(
        nodes, "const",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.zeros(4, np.float32), "ZERO"),
         numpy_helper.from_array(np.full(4, 1e-3, np.float32), "C")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


def test_export_warns_and_records_degenerate_outputs(tmp_path, caplog):
    from pipeline.stages.export import export_model

    _constant_head(tmp_path / "source" / "model.onnx")
    spec = ModelSpec.model_validate({
        "framework": "onnx", "path": "m.onnx", "watch": "m.onnx",
        "inputs": [{"name": "x", "shape": "[batch, 4]"}], "reference": {"num_samples": 32},
    })
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        info = export_model(spec, tmp_path / "source", tmp_path / "export", LOG, name="m")
    assert info["reference_check"] == {"probs": ["constant over samples"]}
    saved = json.loads((tmp_path / "export" / "export.json").read_text())
    assert saved["reference_check"] == {"probs": ["constant over samples"]}
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("reference output 'probs' is degenerate (constant over samples)")


@pytest.fixture
def degenerate_export(kit, tmp_path, bench_lock):
    """The linear model's export, but reference.npz holds a constant output (every sample equal)."""
    export = tmp_path / "export"
    arrays = kit.write_export(export, n=40, labels="exact")
    arrays["output/y"] = np.tile(arrays["output/y"][:1], (40, 1))
    np.savez(export / "reference.npz", **arrays)
    return export


def test_degenerate_reference_fails_reference_gates_only(kit, tmp_path, degenerate_export):
    artifact = tmp_path / "build"
    kit.linear_model(artifact / "model.onnx")
    build = kit.make_build(runs=10, warmup=1, min_cosine=-1.0, max_accuracy_drop=1.0, max_size_mb=100.0)
    data = build.model_dump(by_alias=True)
    data["evaluate"]["gates"]["min"] = {"top1_agreement_min": 0.0, "within_tol": 0.0}
    data["evaluate"]["metrics"] = [
        {"_target_": "tests.evaluate.custom_metric_fixture.worst_share_within", "provides": ["within_tol"]}
    ]
    build = BuildSpec.model_validate({**data, "quantization": build.quantization, "target": build.target})
    m = evaluate_build(build, kit.make_model_spec(), artifact, degenerate_export, LOG, name="b")

    assert m["fidelity"]["reference_degenerate"] == {"y": ["constant over samples"]}
    assert "within_tol" in m["custom"]  # measured, but its gate cannot pass
    reason = "reference output 'y' is degenerate (constant over samples)"
    assert sorted(m["gates"]["failures"]) == sorted([
        f"{reason}: accuracy gate max_accuracy_drop cannot pass",
        f"{reason}: fidelity gate min_cosine cannot pass",
        f"{reason}: fidelity gate min.top1_agreement_min cannot pass",
        f"{reason}: custom gate min.within_tol cannot pass",
    ])
    assert m["gates"]["checked"]["max_size_mb"]["passed"]  # not measured against the reference


def test_usable_reference_records_an_empty_check(kit, tmp_path, bench_lock):
    export = tmp_path / "export"
    kit.write_export(export, n=40)
    artifact = tmp_path / "build"
    kit.linear_model(artifact / "model.onnx")
    m = evaluate_build(kit.make_build(runs=10, warmup=1, min_cosine=0.99), kit.make_model_spec(), artifact, export, LOG)
    assert m["fidelity"]["reference_degenerate"] == {}
    assert m["gates"]["passed"]
