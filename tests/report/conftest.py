"""Per-build metrics files shaped like the evaluate stage's output, with chosen values; a composed
project (params.yaml) and stage logs shaped like the runner's."""

from __future__ import annotations

import json
import os

import pytest
import yaml

ENV = {
    "cpu": {"model": "Test CPU", "arch": "x86_64", "cores": 2},
    "isa": {"avx2": True, "avx512": True, "amx": False, "vnni": True},
    "versions": {"onnx": "1.23.2", "onnxruntime": "1.32.0"},
    "threads": {"intra_op": 1, "inter_op": 0},
    "execution_provider": "CPUExecutionProvider",
}


def metrics(name, quant, p50, cosine, top1=None, source_top1=0.98, failures=(), model="digits_cnn",
            task="classification", figures=None, verdict=None, interval=None, checked=None):
    """A build's metrics: reference p50 1.0 ms, so speedup = 1 / p50. ``figures``: task fidelity
    figures by short name (under ``fidelity.``); ``verdict``: (verdict, reason) as the evaluate stage
    records it; ``interval``: the speedup noise interval."""
    m = {
        "build": {"name": name, "model": model, "task": task, "passes": ["ort_optimize"],
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
                     "top1_agreement": 0.99, **(figures or {})},
        "environment": ENV,
        "gates": {"passed": not failures, "failures": list(failures), "checked": checked or {}},
    }
    if top1 is not None:
        m["accuracy"] = {"top1": top1, "source_top1": source_top1, "drop": source_top1 - top1, "samples": 360}
    if interval is not None:
        m["speedup_noise"] = {"interval": list(interval), "block_ratios": list(interval), "method": "test"}
    if verdict is not None:
        m["verdict"], m["verdict_reason"] = verdict
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


class Project:
    """A throw-away project folder: params.yaml, metrics/builds/*.json, logs/<stage>/<item>.log."""

    def __init__(self, root):
        self.root = root
        self.metrics_dir = root / "metrics" / "builds"
        self.logs = root / "logs"
        self.params = root / "params.yaml"
        self.metrics_dir.mkdir(parents=True)
        self.models: dict = {}
        self.builds: dict = {}

    def model(self, name, task="classification"):
        self.models[name] = {"framework": "onnx", "path": f"{name}.onnx", "watch": f"{name}.onnx", "task": task}
        return self

    def build(self, name, model, quant="none", threads=None, passes=("shape_inference",)):
        target = {"name": "cpu"} if threads is None else {"name": "cpu", "threads": threads}
        self.builds[name] = {"model": model, "passes": [{"name": p, "params": {}} for p in passes],
                             "quantization": {"name": quant}, "target": target}
        self.params.write_text(yaml.safe_dump({"models": self.models, "builds": self.builds}, sort_keys=False))
        return self

    def metrics(self, m, mtime=None):
        path = self.metrics_dir / f"{m['build']['name']}.json"
        path.write_text(json.dumps(m))
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def log(self, stage, item, *lines):
        path = self.logs / stage / f"{item}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines))
        return path


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)
