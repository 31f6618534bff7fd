"""Bounded-memory static calibration (pipeline.quantization.bounded): the estimate and the plan by
hand, chunked ranges equal to ONNX Runtime's unchunked calibration, the budget error before running."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.errors import ConfigError
from pipeline.quantization import bounded
from pipeline.quantization.base import QuantContext
from pipeline.quantization.bounded import Estimate, collect_ranges, estimate_activations, plan
from pipeline.quantization.calibration import data_reader
from pipeline.quantization.static import Calibration, StaticInt8
from pipeline.schema import Factory

LOG = logging.getLogger("test")


def _conv_model(path: Path) -> Path:
    """x [batch, 3, 16, 16] -> Conv(4, 3x3, pad 1) -> Relu -> Conv(2, 1x1) -> y [batch, 2, 16, 16]."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(size=(2, 4, 1, 1)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
            helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 16, 16])],
        [w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def calib_data(n: int = 12, seed: int = 3):
    """Calibration dataset factory for the tests (referred to by _target_)."""
    from pipeline.data import Samples

    rng = np.random.default_rng(seed)
    return Samples({"x": rng.normal(size=(n, 3, 16, 16)).astype(np.float32)})


def _feeds(n: int = 12) -> list[dict[str, np.ndarray]]:
    x = calib_data(n).inputs["x"]
    return [{"x": x[i : i + 1]} for i in range(n)]


def test_estimate_by_shape_inference(tmp_path):
    model = _conv_model(tmp_path / "m.onnx")
    est = estimate_activations(model, {"x": np.zeros((1, 3, 16, 16), np.float32)}, LOG)
    # c1 and r1: 4 x 16 x 16 floats; y: 2 x 16 x 16 floats
    assert est.per_sample == (4 * 256 * 2 + 2 * 256) * 4
    assert est.largest == 4 * 256 * 4 and est.tensors == 3 and est.source == "shape inference"


def test_estimate_probes_data_dependent_shapes(tmp_path):
    """NonZero's output size depends on the data: the float tensors after it are measured in a run."""
    graph = helper.make_graph(
        [
            helper.make_node("NonZero", ["x"], ["nz"]),
            helper.make_node("Cast", ["nz"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Relu", ["f"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "nz.onnx"))
    est = estimate_activations(tmp_path / "nz.onnx", {"x": np.array([[1, 0, 2, 0]], np.float32)}, LOG)
    # two nonzeros -> [2, 2] indices -> two float tensors of 4 values
    assert est.per_sample == 2 * 4 * 4 and est.source == "shape inference + probe run"


def test_plan_by_hand():
    est = Estimate(per_sample=100, largest=10, tensors=3, source="shape inference")
    # minmax: 2 x 100 per sample in a run; 450 free -> batch 2; all 8 samples in one chunk
    p = plan("minmax", est, inputs=1000, samples=8, budget=1450, budget_source="set", key="k")
    assert (p.batch, p.chunk, p.chunks, p.need) == (2, 8, 1, 1400)
    # percentile: a run of b costs 200 b, each kept sample 100 + 3 x 10 = 130; 1000 free:
    # batch min(16, 8, 1000 // 330) = 3, chunk (1000 - 600) // 130 = 3 -> 3
    p = plan("percentile", est, inputs=1000, samples=8, budget=2000, budget_source="set", key="k")
    assert (p.batch, p.chunk, p.chunks, p.need) == (3, 3, 3, 1000 + 600 + 390)
    assert p.need <= p.budget
    # a large budget: batch capped at the samples, one chunk
    p = plan("entropy", est, inputs=0, samples=8, budget=10**9, budget_source="set", key="k")
    assert (p.batch, p.chunk, p.chunks) == (8, 8, 1)


def test_plan_refuses_what_cannot_fit():
    est = Estimate(per_sample=100, largest=10, tensors=3, source="shape inference")
    with pytest.raises(ConfigError, match=r"raise k\.memory_budget_gb") as err:
        plan("percentile", est, inputs=1000, samples=8, budget=1300, budget_source="set", key="k")
    assert err.value.key == "k.memory_budget_gb" and "\n" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        plan("minmax", est, inputs=1000, samples=8, budget=900, budget_source="set", key="k")
    assert err.value.key == "k.num_samples"
    with pytest.raises(ConfigError, match="memory_budget_gb"):  # a fixed batch of 4 needs 800 + 1000
        plan("minmax", est, inputs=1000, samples=8, budget=1700, budget_source="set", key="k", fixed_batch=4)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_chunked_ranges_equal_unchunked(tmp_path, method):
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    model = _conv_model(tmp_path / "m.onnx")
    feeds = _feeds()
    ops = ["Conv", "Relu"]
    whole = create_calibrator(
        model, ops, augmented_model_path=str(tmp_path / "aug.onnx"),
        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                          "entropy": CalibrationMethod.Entropy}[method],
    )
    whole.collect_data(data_reader(feeds))
    expected = whole.compute_data()
    for size in (1, 5):  # chunks of 1 and of 5 (the last one shorter)
        chunks = [feeds[i : i + size] for i in range(0, len(feeds), size)]
        got = collect_ranges(model, chunks, method, ops, {}, False, tmp_path)
        assert sorted(got.keys()) == sorted(expected.keys())
        for name in expected.keys():
            assert np.array_equal(np.asarray(got[name].range_value), np.asarray(expected[name].range_value)), name
    assert not list(tmp_path.glob("augmented_*"))


def _scales(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: inits[n.input[1]] for n in model.graph.node if n.op_type == "QuantizeLinear"}


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_bounded_build_has_the_scales_of_unchunked_quantize_static(tmp_path, method):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from pipeline.quantization.calibration import batches
    from pipeline.quantization.preprocess import prepare

    model = _conv_model(tmp_path / "m.onnx")
    dataset = Factory(**{"_target_": f"{__name__}.calib_data", "n": 12})
    est = estimate_activations(model, {"x": np.zeros((1, 3, 16, 16), np.float32)})
    # room for one percentile sample (a run of 2 x per_sample, kept per_sample + 3 x largest): batch 1
    # and 12 chunks; minmax keeps nothing per sample: batch (3 per_sample + ...) // (2 per_sample) = 2
    budget = (12 * 3 * 256 * 4 + 2 * est.per_sample + est.per_sample + 3 * est.largest + 64) / 2**30
    cal = Calibration(method=method, num_samples=12, dataset=dataset, memory_budget_gb=budget)
    ctx = QuantContext(model_spec=None, log=LOG, work_dir=tmp_path / "w", key="builds.b.quantization")
    ctx.work_dir.mkdir()
    info = StaticInt8().run(model, tmp_path / "bounded.onnx", StaticInt8.Params(calibration=cal), ctx)
    mem = info["calibration_memory"]
    assert (mem["batch"], mem["chunks"]) == ((1, 12) if method == "percentile" else (2, 1))

    ref_in, _ = prepare(model, tmp_path / "r", min_opset=13, run_preprocess=True, log=LOG)
    arrays = calib_data(12).inputs
    quantize_static(
        str(ref_in), str(tmp_path / "whole.onnx"), data_reader(batches(ref_in, arrays)),
        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=info["reduce_range"],
        activation_type=QuantType.QUInt8 if info["activation_type"] == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax if method == "minmax" else CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": cal.percentile} if method == "percentile" else {},
    )
    got, want = _scales(tmp_path / "bounded.onnx"), _scales(tmp_path / "whole.onnx")
    assert sorted(got) == sorted(want) and len(got) >= 3
    for name in want:
        assert np.array_equal(got[name], want[name]), name


def test_budget_error_before_anything_runs(tmp_path, monkeypatch):
    model = _conv_model(tmp_path / "m.onnx")

    def never(*args, **kwargs):
        raise AssertionError("calibration ran")

    monkeypatch.setattr(bounded, "collect_ranges", never)
    dataset = Factory(**{"_target_": f"{__name__}.calib_data", "n": 12})
    cal = Calibration(method="entropy", num_samples=12, dataset=dataset, memory_budget_gb=4e-5)
    ctx = QuantContext(model_spec=None, log=LOG, work_dir=tmp_path, key="builds.b.quantization", source="params.yaml")
    with pytest.raises(ConfigError) as err:
        StaticInt8().run(model, tmp_path / "out.onnx", StaticInt8.Params(calibration=cal), ctx)
    text = str(err.value)
    assert "\n" not in text and text.startswith("params.yaml, key 'builds.b.quantization.calibration.")
    assert "memory_budget_gb" in text
    assert not (tmp_path / "out.onnx").exists()


def test_budget_setting_is_validated():
    with pytest.raises(ValueError):
        Calibration(memory_budget_gb=0)
    assert Calibration().memory_budget_gb is None
