import json
import logging

import numpy as np
import pytest

from pipeline.errors import ConfigError, StageError
from pipeline.evaluate.metrics import evaluate_build
from pipeline.schema import BuildSpec, Selected
from pipeline.targets import TARGETS

LOG = logging.getLogger("test")


@pytest.fixture
def project(kit, tmp_path, bench_lock):
    export = tmp_path / "models" / "m" / "export"
    ref = kit.write_export(export, n=48, labels="flip")
    return export, ref


def _artifact(kit, tmp_path, **kw):
    directory = tmp_path / "builds" / "b" / "model"
    kit.linear_model(directory / "model.onnx", **kw)
    return directory


def test_metrics_keys_and_values(kit, tmp_path, project):
    export, ref = project
    artifact = _artifact(kit, tmp_path, offset=0.125)
    build = kit.make_build(runs=12, warmup=1, samples=32, min_cosine=0.5)
    m = evaluate_build(build, kit.make_model_spec(), artifact, export, LOG, name="b")

    assert set(m["latency_ms"]) == {"mean", "std", "min", "p50", "p90", "p99", "max"}
    lat = m["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert m["throughput_per_s"] > 0
    assert m["benchmark"] == {**m["benchmark"], "warmup": 1, "runs": 12, "batch_size": 1}
    assert set(m["reference"]["latency_ms"]) == set(lat)
    assert m["speedup"] == pytest.approx(m["reference"]["latency_ms"]["p50"] / lat["p50"])
    assert m["model_size_mb"] == pytest.approx((artifact / "model.onnx").stat().st_size / 1e6)
    assert m["num_nodes"] == 3

    fid = m["fidelity"]
    assert fid["samples"] == 32
    assert fid["max_abs_err"] == pytest.approx(0.125, abs=1e-5)
    assert fid["top1_agreement"] == 1.0  # adding a constant to every logit keeps the argmax

    # labels: every 4th of 48 flipped -> the source gets 36/48; the build predicts the same classes
    assert m["accuracy"] == {"top1": 0.75, "source_top1": 0.75, "drop": 0.0, "samples": 48}

    env = m["environment"]
    assert env["build"] == "b" and env["execution_provider"] == "CPUExecutionProvider"
    assert env["threads"]["intra_op"] == 1
    assert m["build"] == {
        "name": "b", "model": "m", "task": "classification", "passes": [], "quantization": "none", "target": "cpu"
    }
    assert m["gates"]["passed"] and m["gates"]["checked"]["min_cosine"]["passed"]
    json.dumps(m, allow_nan=False)  # plain JSON


def test_accuracy_drop_and_failed_gates(kit, tmp_path, project):
    export, ref = project
    offset = np.zeros(kit.N_CLASSES, dtype=np.float32)
    offset[0] = 100.0  # every prediction becomes class 0
    artifact = _artifact(kit, tmp_path, offset=offset)
    build = kit.make_build(runs=10, warmup=1, max_accuracy_drop=0.01, min_top1_agreement=0.99)
    m = evaluate_build(build, kit.make_model_spec(), artifact, export, LOG, name="b")
    labels = ref["labels"]
    assert m["accuracy"]["top1"] == pytest.approx(np.mean(labels == 0))
    assert m["accuracy"]["drop"] == pytest.approx(0.75 - np.mean(labels == 0))
    y = ref["output/y"][:32]
    assert m["fidelity"]["top1_agreement"] == pytest.approx(np.mean(y.argmax(1) == 0))
    assert not m["gates"]["passed"]
    assert [f.split()[0] for f in m["gates"]["failures"]] == ["accuracy.drop", "fidelity.top1_agreement"]


def test_regression_task_has_no_top1(kit, tmp_path, project):
    export, _ = project
    artifact = _artifact(kit, tmp_path)
    m = evaluate_build(kit.make_build(runs=10), kit.make_model_spec("regression"), artifact, export, LOG)
    assert "accuracy" not in m and "top1_agreement" not in m["fidelity"]
    assert m["fidelity"]["max_abs_err"] == pytest.approx(0.0, abs=1e-6)


def test_batch_size_wraps_samples_and_counts_throughput(kit, tmp_path, project):
    export, _ = project
    artifact = _artifact(kit, tmp_path)
    m = evaluate_build(kit.make_build(runs=10, batch_size=64), kit.make_model_spec(), artifact, export, LOG)
    assert m["benchmark"]["batch_size"] == 64
    assert m["throughput_per_s"] == pytest.approx(64 * 1000 / m["latency_ms"]["mean"])


def test_fixed_batch_model_with_other_batch_size_is_a_config_error(kit, tmp_path, project):
    export, _ = project
    artifact = _artifact(kit, tmp_path, batch=1)
    with pytest.raises(ConfigError, match="batch dim is fixed at 1") as err:
        evaluate_build(kit.make_build(runs=10, batch_size=8), kit.make_model_spec(), artifact, export, LOG, name="b")
    assert err.value.key == "builds.b.evaluate.batch_size"


def test_missing_files_name_the_step(kit, tmp_path, project):
    export, _ = project
    with pytest.raises(StageError, match="build artifact .* not found"):
        evaluate_build(kit.make_build(), kit.make_model_spec(), tmp_path / "nowhere", export, LOG)
    artifact = _artifact(kit, tmp_path)
    (export / "reference.npz").unlink()
    with pytest.raises(StageError, match="reference.npz not found: run the export stage first"):
        evaluate_build(kit.make_build(), kit.make_model_spec(), artifact, export, LOG)


def test_corrupt_artifact_is_one_line(kit, tmp_path, project):
    export, _ = project
    artifact = tmp_path / "builds" / "b" / "model"
    artifact.mkdir(parents=True)
    (artifact / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(StageError) as err:
        evaluate_build(kit.make_build(), kit.make_model_spec(), artifact, export, LOG)
    assert "ONNX Runtime cannot load build artifact" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="CUDA is installed here"
)
def test_uninstalled_provider_fails_before_measuring(kit, tmp_path, project):
    export, _ = project
    artifact = _artifact(kit, tmp_path)
    cuda = TARGETS["cuda"]
    build = kit.make_build()
    build = BuildSpec.model_validate(
        {**build.model_dump(), "quantization": build.quantization, "target": Selected(name="cuda", params=cuda.Params())}
    )
    with pytest.raises(ConfigError, match="CUDAExecutionProvider .* is not installed") as err:
        evaluate_build(build, kit.make_model_spec(), artifact, export, LOG, name="b")
    assert err.value.key == "builds.b.target.name"


def _token_model(path, scale: float = 1.0):
    """input_ids, attention_mask (int64, [batch, seq]) -> masked mean of embeddings [batch, 4]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    emb = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32) * scale
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["e"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "AX"], ["m3"]),
        helper.make_node("Mul", ["e", "m3"], ["em"]),
        helper.make_node("ReduceSum", ["em", "AX1"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["m3", "AX1"], ["n"], keepdims=0),
        helper.make_node("Div", ["s", "n"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tokens",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(emb, "E"), numpy_helper.from_array(np.array([2], np.int64), "AX"),
         numpy_helper.from_array(np.array([1], np.int64), "AX1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def test_multi_input_int64_embedding_model(tmp_path, bench_lock):
    import onnxruntime as ort

    export = tmp_path / "export"
    _token_model(export / "model.onnx")
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 50, size=(40, 7)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[:, 5:] = 0
    sess = ort.InferenceSession(str(export / "model.onnx"))
    out = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    np.savez(export / "reference.npz", **{"input/input_ids": ids, "input/attention_mask": mask, "output/embedding": out})
    artifact = tmp_path / "build"
    _token_model(artifact / "model.onnx", scale=2.0)  # every embedding doubled: cosine 1, error = |out|

    from pipeline.schema import ModelSpec

    # the model outputs an already pooled embedding: pooling none (mean pooling needs [N, positions, dim])
    spec = ModelSpec(framework="onnx", path="t.onnx", watch="t.onnx", task="embedding", fidelity={"pooling": "none"})
    build = BuildSpec.model_validate({
        "model": "t", "quantization": Selected(name="none", params=None),
        "target": Selected(name="cpu", params=TARGETS["cpu"].Params(threads=1)),
        "evaluate": {"warmup": 1, "runs": 10, "batch_size": 3, "fidelity_samples": 32},
    })
    m = evaluate_build(build, spec, artifact, export, LOG, name="t")
    assert m["fidelity"]["cosine_min"] == pytest.approx(1.0, abs=1e-6)
    assert m["fidelity"]["embedding_cosine_min"] == pytest.approx(1.0, abs=1e-6)
    assert m["fidelity"]["max_abs_err"] == pytest.approx(np.abs(out[:32]).max(), rel=1e-5)
    assert "top1_agreement" not in m["fidelity"] and "accuracy" not in m
    assert m["benchmark"]["batch_size"] == 3
