"""Custom metrics (pipeline.evaluate.custom_metrics): called with source/build outputs, inputs and
labels; their numbers land under ``custom.<name>`` and are gated by name; a failing metric costs one
log line and leaves the others written."""

from __future__ import annotations

import importlib
import logging

import numpy as np
import pytest

from pipeline.evaluate.metrics import evaluate_build
from pipeline.evaluate.custom_metrics import run_custom_metrics
from pipeline.schema import BuildSpec, MetricSpec, ModelSpec

FIXTURE = "tests.evaluate.custom_metric_fixture"
LOG = logging.getLogger("test.custom")


def _metric(fn: str, provides: list[str], **kwargs) -> MetricSpec:
    return MetricSpec.model_validate({"_target_": f"{FIXTURE}.{fn}", "provides": provides, **kwargs})


def test_fixture_module_is_importable_by_dotted_path():
    module = importlib.import_module(FIXTURE)
    assert callable(module.worst_share_within)
    _metric("worst_share_within", ["within_tol"])  # the schema locates the module too


def test_values_by_name_and_arguments():
    ref = {"y": np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])}
    out = {"y": ref["y"] + np.array([[0.0, 0.05], [0.0, 0.2], [0.0, 0.0], [0.5, 0.0]])}
    specs = [
        _metric("worst_share_within", ["within_tol", "max_diff"], tol=0.1),
        _metric("labelled_count", ["num_labels", "num_inputs"]),
    ]
    values, errors = run_custom_metrics(specs, ref, out, {"x": np.zeros((4, 2))}, np.arange(4), LOG)
    assert errors == {}
    assert values == {"within_tol": 0.5, "max_diff": 0.5, "num_labels": 4.0, "num_inputs": 1.0}
    assert all(type(v) is float for v in values.values())


def test_failures_are_one_line_each_and_others_still_written(caplog):
    ref = {"y": np.zeros((3, 2))}
    specs = [
        _metric("raises", ["a"]),
        _metric("not_a_mapping", ["b"]),
        _metric("nan_value", ["bad", "text", "absent"]),
        _metric("worst_share_within", ["within_tol"]),
    ]
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        values, errors = run_custom_metrics(specs, ref, ref, {}, None, LOG)
    assert values == {"within_tol": 1.0}
    assert errors[f"{FIXTURE}.raises"] == "raised RuntimeError: metric exploded on purpose"
    assert errors[f"{FIXTURE}.not_a_mapping"].startswith("returned list, expected a mapping")
    nan_errors = errors[f"{FIXTURE}.nan_value"]
    assert "nan for 'bad'" in nan_errors and "'high' for 'text'" in nan_errors and "no 'absent'" in nan_errors
    lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split("'")[1] for r in lines] == [
        f"{FIXTURE}.raises", f"{FIXTURE}.not_a_mapping", *[f"{FIXTURE}.nan_value"] * 3
    ]
    assert all(r.getMessage().startswith("error: custom metric '") and "\n" not in r.getMessage() for r in lines)
    # the traceback goes to the stage log at debug level
    [trace] = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert trace.exc_info is not None and "metric exploded" in str(trace.exc_info[1])


def test_unimportable_target_is_an_error_of_that_metric_only():
    spec = MetricSpec.model_construct(target=f"{FIXTURE}.no_such_fn", provides=["z"])
    values, errors = run_custom_metrics(
        [spec, _metric("worst_share_within", ["within_tol"])], {"y": np.ones((2, 1))}, {"y": np.ones((2, 1))}, {}, None, LOG
    )
    assert values == {"within_tol": 1.0}
    assert "has no attribute 'no_such_fn'" in errors[f"{FIXTURE}.no_such_fn"]


def _build(kit, gates: dict, metrics: list[MetricSpec]) -> BuildSpec:
    build = kit.make_build(runs=10, warmup=1)
    data = build.model_dump(by_alias=True)
    data["evaluate"]["gates"] = gates
    data["evaluate"]["metrics"] = [m.as_hydra() for m in metrics]
    return BuildSpec.model_validate({**data, "quantization": build.quantization, "target": build.target})


@pytest.fixture
def export(kit, tmp_path, bench_lock):
    directory = tmp_path / "export"
    kit.write_export(directory, n=40, labels="exact")
    return directory


def test_custom_metric_feeds_a_gate_in_evaluate_build(kit, tmp_path, export):
    offset = np.zeros(kit.N_CLASSES, dtype=np.float32)
    offset[1] = 0.25  # every sample's largest difference is 0.25
    artifact = tmp_path / "build"
    kit.linear_model(artifact / "model.onnx", offset=offset)
    model = ModelSpec.model_validate({
        "framework": "onnx", "path": "m.onnx", "watch": "m.onnx",
        "metrics": [{"_target_": f"{FIXTURE}.labelled_count", "provides": ["num_labels", "num_inputs"]}],
    })
    build_metric = _metric("worst_share_within", ["within_tol", "max_diff"], tol=0.3)
    passing = _build(kit, {"min": {"within_tol": 1.0}, "max": {"max_diff": 0.3}}, [build_metric])
    m = evaluate_build(passing, model, artifact, export, LOG, name="b")
    assert m["custom"]["within_tol"] == 1.0
    assert m["custom"]["max_diff"] == pytest.approx(0.25)
    assert m["custom"]["num_labels"] == 32.0  # the fidelity samples' labels
    assert m["gates"]["passed"], m["gates"]
    assert m["gates"]["checked"]["min.within_tol"]["metric"] == "custom.within_tol"

    failing = _build(kit, {"min": {"within_tol": 1.0}}, [_metric("worst_share_within", ["within_tol"], tol=0.1)])
    m = evaluate_build(failing, model, artifact, export, LOG, name="b")
    assert m["custom"]["within_tol"] == 0.0
    assert m["gates"]["failures"] == ["custom.within_tol 0 < min.within_tol 1.0"]


def test_raising_custom_metric_leaves_the_others_and_fails_its_gate(kit, tmp_path, export):
    artifact = tmp_path / "build"
    kit.linear_model(artifact / "model.onnx")
    model = kit.make_model_spec()
    build = _build(
        kit,
        {"min": {"a": 0.5, "within_tol": 1.0}},
        [_metric("raises", ["a"]), _metric("worst_share_within", ["within_tol"])],
    )
    m = evaluate_build(build, model, artifact, export, LOG, name="b")
    assert m["custom"] == {"within_tol": 1.0}
    assert m["custom_errors"] == {f"{FIXTURE}.raises": "raised RuntimeError: metric exploded on purpose"}
    assert m["gates"]["failures"] == ["custom.a was not measured, but min.a 0.5 requires it"]
