import math

import pytest

from pipeline.evaluate.gates import GATES, check_gates, evaluate_gates
from pipeline.schema import Gates

METRICS = {
    "speedup": 0.93,
    "latency_ms": {"p50": 2.5},
    "model_size_mb": 1.2,
    "fidelity": {"cosine_min": 0.9995, "max_abs_err": 0.02, "top1_agreement": 0.99},
    "accuracy": {"drop": 0.005},
}


def test_all_gates_pass():
    gates = Gates(min_speedup=0.9, min_cosine=0.999, max_abs_err=0.05, max_accuracy_drop=0.01,
                  min_top1_agreement=0.98, max_p50_ms=3.0, max_size_mb=2.0)
    report = evaluate_gates(METRICS, gates)
    assert report["passed"] and report["failures"] == []
    assert set(report["checked"]) == set(GATES)
    assert all(c["passed"] for c in report["checked"].values())


def test_failures_name_metric_value_and_threshold():
    failures = check_gates(METRICS, Gates(min_speedup=1.0, max_size_mb=1.0, min_cosine=0.999))
    assert failures == ["model_size_mb 1.2 > max_size_mb 1.0", "speedup 0.93 < min_speedup 1.0"]


def test_close_values_get_enough_digits():
    [msg] = check_gates({"fidelity": {"cosine_min": 0.98999}}, {"min_cosine": 0.99})
    assert msg == "fidelity.cosine_min 0.98999 < min_cosine 0.99"


def test_boundaries_are_inclusive():
    assert check_gates({"speedup": 1.0, "model_size_mb": 2.0}, {"min_speedup": 1.0, "max_size_mb": 2.0}) == []


def test_disabled_gates_are_not_checked():
    report = evaluate_gates(METRICS, Gates())
    assert report == {"passed": True, "failures": [], "checked": {}}


def test_unmeasured_metric_fails_its_gate():
    [msg] = check_gates({"speedup": 2.0}, {"max_accuracy_drop": 0.01})
    assert msg == "accuracy.drop was not measured, but max_accuracy_drop 0.01 requires it"


def test_nan_fails():
    report = evaluate_gates({"fidelity": {"max_abs_err": math.nan}}, {"max_abs_err": 0.1})
    assert not report["passed"]
    assert "fidelity.max_abs_err nan" in report["failures"][0]


def test_unknown_gate_is_rejected():
    with pytest.raises(ValueError, match="min_sped"):
        check_gates(METRICS, {"min_sped": 1.0})


# --- gates by metric name, task figures, custom metrics, degenerate references ------------------

TASK = {
    "build": {"task": "detection"},
    "speedup": 1.5,
    "fidelity": {"cosine_min": 0.95, "iou_min": 0.87, "iou_mean": 0.93, "reference_degenerate": {}},
    "custom": {"my_metric": 0.96},
}


def test_task_figure_and_custom_metric_gates_by_name():
    passing = Gates(min={"iou_min": 0.85, "my_metric": 0.95}, max={"iou_mean": 1.0})
    report = evaluate_gates(TASK, passing)
    assert report["passed"], report
    assert report["checked"]["min.iou_min"]["metric"] == "fidelity.iou_min"
    assert report["checked"]["min.my_metric"]["metric"] == "custom.my_metric"
    failing = Gates(min={"iou_min": 0.9, "my_metric": 0.97})
    assert check_gates(TASK, failing) == [
        "fidelity.iou_min 0.87 < min.iou_min 0.9",
        "custom.my_metric 0.96 < min.my_metric 0.97",
    ]


def test_custom_metric_that_failed_is_not_measured():
    metrics = {**TASK, "custom": {}, "custom_errors": {"pkg.fn": "raised RuntimeError: boom"}}
    assert check_gates(metrics, Gates(min={"my_metric": 0.5})) == [
        "custom.my_metric was not measured, but min.my_metric 0.5 requires it"
    ]


def test_degenerate_reference_fails_every_reference_bound_gate():
    metrics = {
        **METRICS,
        "fidelity": {**METRICS["fidelity"], "reference_degenerate": {"probs": ["constant over samples"]}},
        "custom": {"my_metric": 1.0},
    }
    gates = Gates(min_cosine=0.5, max_accuracy_drop=0.5, min_speedup=0.5, max_size_mb=2.0, min={"my_metric": 0.5})
    report = evaluate_gates(metrics, gates)
    reason = "reference output 'probs' is degenerate (constant over samples)"
    assert report["failures"] == [
        f"{reason}: accuracy gate max_accuracy_drop cannot pass",
        f"{reason}: fidelity gate min_cosine cannot pass",
        f"{reason}: custom gate min.my_metric cannot pass",
    ]
    # the value is still recorded; speed and size gates are judged as usual
    assert report["checked"]["min_cosine"] == {
        "metric": "fidelity.cosine_min", "threshold": 0.5, "value": 0.9995, "passed": False
    }
    assert report["checked"]["min_speedup"]["passed"] and report["checked"]["max_size_mb"]["passed"]


def test_two_degenerate_outputs_are_named_together():
    metrics = {"fidelity": {"cosine_min": 1.0, "reference_degenerate": {"a": ["all zero"], "b": ["non-finite values"]}}}
    [msg] = check_gates(metrics, {"min_cosine": 0.9})
    assert msg == (
        "reference output 'a' is degenerate (all zero); reference output 'b' is degenerate (non-finite values): "
        "fidelity gate min_cosine cannot pass"
    )


def test_a_degenerate_side_output_does_not_block_gates_on_the_task_output():
    """A constant side output (a count, a saturated state) fails only gates measured on it."""
    metrics = {
        "build": {"task": "detection"},
        "fidelity": {
            "output": "map", "iou_min": 0.97, "cosine_min": 0.99,
            "per_output": {"map": {}, "aux": {}},
            "reference_degenerate": {"aux": ["constant over samples"]},
        },
    }
    report = evaluate_gates(metrics, Gates(min_cosine=0.9, min={"iou_min": 0.95}))
    assert report["passed"], report["failures"]
    # the task's own output degenerate: its figures cannot pass
    metrics["fidelity"]["reference_degenerate"] = {"map": ["all zero"]}
    report = evaluate_gates(metrics, Gates(min_cosine=0.9, min={"iou_min": 0.95}))
    assert report["failures"] == ["reference output 'map' is degenerate (all zero): fidelity gate min.iou_min cannot pass"]
    # every output degenerate: the figures over all outputs cannot pass either
    metrics["fidelity"]["reference_degenerate"] = {"map": ["all zero"], "aux": ["all zero"]}
    assert len(evaluate_gates(metrics, Gates(min_cosine=0.9))["failures"]) == 1
