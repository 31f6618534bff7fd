"""Sensitivity ranking and mixed precision on a model with exactly one sensitive node."""

from __future__ import annotations

import json
import logging

import numpy as np

from pipeline.quantization.base import QuantContext
from pipeline.quantization.static import Calibration, StaticInt8
from pipeline.search.mixed import search_exclusions
from pipeline.search.sensitivity import quantized_nodes, rank_nodes

LOG = logging.getLogger("test")


def _quantize(skit, src, dst, tmp_path, exclude=()):
    params = StaticInt8.Params(
        per_channel=True, calibration=Calibration(num_samples=16), op_types_to_quantize=["MatMul"],
        nodes_to_exclude=list(exclude), preprocess=False,
    )
    work = tmp_path / "work" / dst.parent.name
    work.mkdir(parents=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ctx = QuantContext(model_spec=skit.model_spec(skit.WIDE), log=LOG, work_dir=work)
    StaticInt8().run(src, dst, params, ctx)
    return dst


def _cosine_min(model, x, y_ref):
    import onnxruntime as ort

    from pipeline.evaluate.fidelity import per_sample_cosine

    y = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return float(per_sample_cosine(y, y_ref).min())


def test_the_sensitive_node_ranks_first_by_the_error_it_adds(skit, tmp_path):
    import onnx

    src = skit.sensitive_model(tmp_path / "float" / "model.onnx")
    qdq = _quantize(skit, src, tmp_path / "qdq" / "model.onnx", tmp_path)
    assert sorted(n.name for n in quantized_nodes(onnx.load(str(qdq)), ["MatMul"])) == ["mm_out", skit.SENSITIVE]
    x = np.random.default_rng(5).uniform(-1, 1, (4, skit.WIDE)).astype(np.float32)
    ranked = rank_nodes(src, qdq, [{"x": x[i : i + 1]} for i in range(4)], tmp_path / "probe", ["MatMul"])
    assert [e.node for e in ranked] == [skit.SENSITIVE, "mm_out"]
    wide, out = ranked
    # mm_wide: inputs below one quantization step (about 8) round to zero: most of the signal is lost
    assert wide.rel_error > 0.5
    # mm_out, with float inputs, adds only ordinary int8 error (SQNR well above 25 dB)
    assert out.sqnr_db > 25 and out.rel_error < 0.05


def test_mixed_precision_excludes_exactly_the_sensitive_node(skit, tmp_path):
    src = skit.sensitive_model(tmp_path / "float" / "model.onnx")
    x = np.random.default_rng(7).uniform(-1, 1, (32, skit.WIDE)).astype(np.float32)
    import onnxruntime as ort

    y_ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    full = _quantize(skit, src, tmp_path / "full" / "model.onnx", tmp_path)
    assert _cosine_min(full, x, y_ref) < 0.9  # the gate below fails fully quantized

    ranked = rank_nodes(src, full, [{"x": x[:1]}, {"x": x[1:2]}], tmp_path / "probe", ["MatMul"])
    tried = []

    def step(nodes, i):
        tried.append(list(nodes))
        out = _quantize(skit, src, tmp_path / f"step{i}" / "model.onnx", tmp_path, exclude=nodes)
        cos = _cosine_min(out, x, y_ref)
        return {"excluded": list(nodes), "cosine_min": cos, "quality_passed": cos >= 0.98}

    result = search_exclusions([e.node for e in ranked], step, max_steps=6)
    assert tried == [[skit.SENSITIVE]]
    assert result["passing"]["excluded"] == [skit.SENSITIVE]
    assert result["passing"]["cosine_min"] >= 0.98
    assert result["passing"]["kept_float"] == 1


def test_steps_double_then_bisect():
    ranked = [f"n{i}" for i in range(20)]
    tried = []

    def step(nodes, i):
        tried.append(len(nodes))
        return {"quality_passed": len(nodes) >= 5}

    result = search_exclusions(ranked, step, max_steps=10)
    assert tried == [1, 2, 4, 8, 6, 5]  # doubling until 8 passes, then bisecting (4, 8]
    assert result["passing"]["kept_float"] == 5
    tried.clear()
    result = search_exclusions(ranked, step, max_steps=3)  # bounded: 1, 2, 4 all fail
    assert tried == [1, 2, 4] and result["passing"] is None
    tried.clear()
    assert search_exclusions(ranked[:3], lambda n, i: {"quality_passed": False}, 10)["passing"] is None


def test_auto_search_records_the_mixed_precision_steps(skit, tmp_path, bench_lock):
    from pipeline.search.record import SEARCH_FILE
    from pipeline.stages.quantize import quantize_build

    export = skit.write_export(tmp_path / "export", skit.sensitive_model)
    passes = tmp_path / "passes"
    skit.sensitive_model(passes / "model.onnx")
    build = skit.auto_build(
        {"graphs": ["passes"], "modes": ["static"], "op_types": [["MatMul"]]},
        mixed={"enabled": True, "candidates": 1, "ranking_samples": 4, "max_steps": 4},
        min_cosine=0.98,
    )
    out = tmp_path / "model"
    quantize_build(build, skit.model_spec(skit.WIDE), passes, out, LOG, build_name="b", export_dir=export)
    record = json.loads((out / SEARCH_FILE).read_text())
    (mixed,) = record["mixed_precision"]
    assert mixed["parent"] == "static-pc-minmax-MatMul"
    assert mixed["ranking"][0]["node"] == skit.SENSITIVE
    assert [s["excluded_nodes"] for s in mixed["steps"]] == [[skit.SENSITIVE]]
    assert mixed["steps"][0]["quality_passed"] and mixed["passing"] == "static-pc-minmax-MatMul+float1"
    by_name = {c["name"]: c for c in record["candidates"]}
    assert not by_name["static-pc-minmax-MatMul"]["screen"]["quality_passed"]
    assert by_name["static-pc-minmax-MatMul+float1"]["excluded_nodes"] == [skit.SENSITIVE]
    assert by_name["static-pc-minmax-MatMul+float1"]["final"]["gates_passed"]
    assert record["choice"]["chosen"] in ("fp32", "static-pc-minmax-MatMul+float1")
    quant = json.loads((out / "quantization.json").read_text())
    assert quant["quantizer"] == "auto" and quant["info"]["chosen"] == record["choice"]["chosen"]


def test_op_type_choices_that_quantize_the_same_ops_are_one_candidate():
    from pipeline.search.space import Space, plan

    space = Space(graphs=["passes"], modes=["dynamic", "static"], op_types=[None, ["Conv"]])
    conv_only = plan(space, ["passes"], {"passes": {"Conv", "Relu", "Add"}})
    names = [c.name for c in conv_only.candidates]
    # dynamic int8 quantizes only the Convs of this graph either way; static QDQ also quantizes Add/Relu
    assert names == ["fp32", "dynamic-pc", "static-pc-minmax", "static-pc-minmax-Conv"]
    mixed = plan(space, ["passes"], {"passes": {"Conv", "MatMul"}})
    assert len(mixed.candidates) == 5  # here dynamic [Conv] leaves the MatMuls in float: a different build
