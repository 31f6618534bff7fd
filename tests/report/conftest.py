"""Per-build metrics files shaped like the evaluate stage's output, with chosen values."""

from __future__ import annotations

import json

import pytest

ENV = {
    "cpu": {"model": "Test CPU", "arch": "x86_64", "cores": 2},
    "isa": {"avx2": True, "avx512": True, "amx": False, "vnni": True},
    "versions": {"onnx": "1.23.2", "onnxruntime": "1.32.0"},
    "threads": {"intra_op": 1, "inter_op": 0},
    "execution_provider": "CPUExecutionProvider",
}


def metrics(name, quant, p50, cosine, top1=None, source_top1=0.98, failures=(), model="digits_cnn"):
    m = {
        "build": {"name": name, "model": model, "task": "classification", "passes": ["ort_optimize"],
                  "quantization": quant, "target": "cpu"},
        "latency_ms": {"mean": p50 * 1.05, "std": p50 * 0.1, "min": p50 * 0.9, "p50": p50, "p90": p50 * 1.2,
                       "p99": p50 * 1.5, "max": p50 * 2},
        "throughput_per_s": 1000 / (p50 * 1.05),
        "benchmark": {"warmup": 10, "runs": 100, "batch_size": 1, "blocks": 10},
        "reference": {"latency_ms": {"p50": 1.0}},
        "speedup": 1.0 / p50,
        "model_size_mb": 0.1,
        "num_nodes": 12,
        "fidelity": {"cosine_min": cosine, "max_abs_err": 1 - cosine, "mean_abs_err": (1 - cosine) / 10,
                     "top1_agreement": 0.99},
        "environment": ENV,
        "gates": {"passed": not failures, "failures": list(failures), "checked": {}},
    }
    if top1 is not None:
        m["accuracy"] = {"top1": top1, "source_top1": source_top1, "drop": source_top1 - top1, "samples": 360}
    return m


BUILDS = [
    metrics("cnn_fp32", "none", 1.0, 0.9999999, 0.98),
    metrics("cnn_dynamic_int8", "dynamic_int8", 0.9, 0.9991, 0.975),
    metrics("cnn_static_int8", "static_int8", 0.45, 0.9985, 0.977),
    metrics("cnn_static_int8_s8s8", "static_int8", 1.6, 0.9987, 0.976,
            failures=["speedup 0.625 < min_speedup 1.0"]),
]


@pytest.fixture
def metrics_dir(tmp_path):
    d = tmp_path / "metrics" / "builds"
    d.mkdir(parents=True)
    for m in BUILDS:
        (d / f"{m['build']['name']}.json").write_text(json.dumps(m))
    return d


@pytest.fixture
def make_metrics():
    return metrics
