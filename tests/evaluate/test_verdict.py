"""Verdicts on hand-made measurements: faster, not_faster (slower / within noise), unchanged, fails_gates, failed."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.evaluate.verdict import (
    FAILED,
    FAILS_GATES,
    FASTER,
    NOT_FASTER,
    UNCHANGED,
    block_ratios,
    decide,
    noise_interval,
    nothing_quantized,
    same_graph,
    speed_noise,
    verdict_for_failure,
)

LOG = logging.getLogger("test")


def _metrics(build_p50, ref_p50, interval, failures=(), checked=True, quantization="static_int8"):
    return {
        "build": {"quantization": quantization},
        "speedup": ref_p50 / build_p50,
        "latency_ms": {"p50": build_p50},
        "reference": {"latency_ms": {"p50": ref_p50}},
        "speedup_noise": {"interval": list(interval)},
        "gates": {"passed": not failures, "failures": list(failures), "checked": {"min_cosine": {}} if checked else {}},
    }


def test_block_ratios_and_interval_by_hand():
    # two blocks of 3 runs: medians ref 10, 20; build 5, 10 -> ratios 2, 2
    assert block_ratios([9, 10, 11, 20, 21, 19], [5, 4, 6, 10, 11, 9], [3, 3]) == [2.0, 2.0]
    # ratios 1..11: 10th percentile at position 1.0 -> 2, 90th at position 9.0 -> 10
    assert noise_interval([float(r) for r in range(1, 12)]) == (2.0, 10.0)
    # one block: the interval is that ratio
    assert noise_interval([1.5]) == (1.5, 1.5)
    with pytest.raises(ValueError):
        block_ratios([1, 2], [1], [2])


def test_speed_noise_uses_the_latency_harness_blocks():
    ref = [10] * 5 + [12] * 5  # 2 blocks of 5
    build = [5] * 5 + [12] * 5
    noise = speed_noise(ref, build, blocks=2)
    assert noise["block_ratios"] == [2.0, 1.0]
    assert noise["interval"] == [pytest.approx(1.1), pytest.approx(1.9)]


def test_faster_only_beyond_noise():
    v = decide(_metrics(0.5, 1.0, (1.8, 2.2)))
    assert v["verdict"] == FASTER
    assert "2.00x the fp32 export" in v["verdict_reason"] and "p50 0.5 vs 1 ms" in v["verdict_reason"]
    assert "noise 1.80-2.20x" in v["verdict_reason"] and "gates pass" in v["verdict_reason"]


def test_within_noise_is_not_faster():
    # 1.04x at p50, but one block pair read 0.97x: not faster beyond noise
    v = decide(_metrics(0.96, 1.0, (0.97, 1.10)))
    assert v["verdict"] == NOT_FASTER
    assert "within noise" in v["verdict_reason"]


def test_slower_is_not_faster():
    v = decide(_metrics(1.04, 0.86, (0.79, 0.87)))
    assert v["verdict"] == NOT_FASTER
    assert v["verdict_reason"].startswith("static_int8 build is 0.83x the fp32 export (p50 1.04 vs 0.86 ms")
    assert "slower" in v["verdict_reason"]


def test_failed_gates_win_over_speed_and_are_listed():
    v = decide(_metrics(0.5, 1.0, (1.8, 2.2), failures=["fidelity.cosine_min 0.9 < min_cosine 0.99"]))
    assert v["verdict"] == FAILS_GATES
    assert "fidelity.cosine_min 0.9 < min_cosine 0.99" in v["verdict_reason"]


def test_unchanged_when_nothing_quantized():
    quant = {"quantizer": "static_int8", "quantized_nodes": 0}
    reason = nothing_quantized(quant)
    assert reason and "quantized no node" in reason
    v = decide(_metrics(0.99, 1.0, (0.95, 1.05)), unchanged=reason)
    assert v["verdict"] == UNCHANGED and "quantized no node" in v["verdict_reason"]
    # without quantized_nodes: the op histograms tell
    assert nothing_quantized({"quantizer": "dynamic_int8", "ops_before": {"If": 1}, "ops": {"If": 1}})
    assert nothing_quantized({"quantizer": "dynamic_int8", "ops_before": {"MatMul": 1},
                              "ops": {"MatMulInteger": 1, "DynamicQuantizeLinear": 1}}) is None
    assert nothing_quantized({"quantizer": "static_int8", "quantized_nodes": 3}) is None
    assert nothing_quantized({"quantizer": "none", "ops": {}}) is None
    # a search that chose float on purpose is not "nothing was quantized"
    assert nothing_quantized({"quantizer": "auto", "ops_before": {"Add": 1}, "ops": {"Add": 1},
                              "info": {"float_chosen": True}}) is None


def test_same_graph_ignores_shape_annotations(kit, tmp_path):
    import onnx

    a = kit.linear_model(tmp_path / "a" / "model.onnx")
    b = kit.linear_model(tmp_path / "b" / "model.onnx")
    m = onnx.load(str(b))
    m = onnx.shape_inference.infer_shapes(m)
    onnx.save(m, str(b))
    assert same_graph(a, b)
    c = kit.linear_model(tmp_path / "c" / "model.onnx", offset=0.5)
    assert not same_graph(a, c)


def test_failed_build():
    v = verdict_for_failure("quantize stage, static_int8 failed: out of memory")
    assert v == {"verdict": FAILED, "verdict_reason": "the build failed: quantize stage, static_int8 failed: out of memory"}


def test_evaluate_build_writes_verdict(kit, tmp_path, bench_lock):
    from pipeline.evaluate.metrics import evaluate_build
    from pipeline.evaluate.metrics import headline

    export = tmp_path / "export"
    kit.write_export(export, n=40)
    artifact = tmp_path / "model"
    kit.linear_model(artifact / "model.onnx")  # the same graph as the export
    m = evaluate_build(kit.make_build(runs=10, warmup=1), kit.make_model_spec(), artifact, export, LOG, name="b")
    assert m["verdict"] == UNCHANGED and "equals the fp32 export" in m["verdict_reason"]
    assert len(m["speedup_noise"]["block_ratios"]) == 10
    lo, hi = m["speedup_noise"]["interval"]
    assert lo <= hi and np.isfinite(lo)
    assert headline(m)["verdict"] == UNCHANGED

    kit.linear_model(artifact / "model.onnx", offset=0.5)
    m = evaluate_build(
        kit.make_build(runs=10, warmup=1, min_cosine=0.99999), kit.make_model_spec(), artifact, export, LOG, name="b"
    )
    assert m["verdict"] == FAILS_GATES and "min_cosine" in m["verdict_reason"]
