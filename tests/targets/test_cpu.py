import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from pipeline.targets import TARGETS, get_target
from pipeline.targets.cpu import CpuParams, CpuTarget


def test_session_runs_and_matches_numpy(tiny_model):
    path, w = tiny_model
    sess = CpuTarget().session(path, CpuParams(threads=1))
    x = np.ones((2, 3), dtype=np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], x @ w)
    assert sess.get_providers() == ["CPUExecutionProvider"]


def test_options_are_applied_to_the_session(tiny_model):
    path, _ = tiny_model
    params = CpuParams(
        threads=2,
        inter_op_threads=3,
        execution_mode="parallel",
        graph_optimization_level="basic",
        session_config={"session.intra_op.allow_spinning": "0"},
    )
    so = CpuTarget().session(path, params).get_session_options()
    assert so.intra_op_num_threads == 2
    assert so.inter_op_num_threads == 3
    assert so.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("disable", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
        ("extended", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
        ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
    ],
)
def test_optimization_levels(tiny_model, level, expected):
    path, _ = tiny_model
    so = CpuTarget().session(path, CpuParams(graph_optimization_level=level)).get_session_options()
    assert so.graph_optimization_level == expected


def test_defaults_leave_threads_to_onnxruntime():
    p = CpuParams()
    assert (p.name, p.threads, p.inter_op_threads, p.execution_mode, p.graph_optimization_level) == (
        "cpu",
        0,
        0,
        "sequential",
        "all",
    )


@pytest.mark.parametrize(
    "bad",
    [{"threads": -1}, {"threads": "abc"}, {"execution_mode": "async"}, {"graph_optimization_level": "max"}, {"thread": 1}],
)
def test_bad_params_rejected(bad):
    with pytest.raises(ValidationError):
        CpuParams(**bad)


def test_describe_records_settings():
    info = CpuTarget().describe(CpuParams(threads=1, provider_options={"arena_extend_strategy": "kSameAsRequested"}))
    assert info["provider"] == "CPUExecutionProvider"
    assert info["intra_op_threads"] == 1
    assert info["graph_optimization_level"] == "all"
    assert info["provider_options"] == {"arena_extend_strategy": "kSameAsRequested"}
    assert info["cores"] >= 1


def test_registry_lookup():
    assert TARGETS["cpu"] is CpuTarget
    assert isinstance(get_target("cpu"), CpuTarget)
