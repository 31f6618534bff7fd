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
