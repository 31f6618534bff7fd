"""The whole search on small models: int8 cannot win -> fp32 ships; every candidate fails -> fails_gates;
the recorded search.json replays to the same choice; the evaluate stage merges it into the metrics."""

from __future__ import annotations

import json
import logging

import pytest

from pipeline.errors import StageError
from pipeline.search.choose import choose
from pipeline.search.record import SEARCH_FILE
from pipeline.stages.quantize import quantize_build

LOG = logging.getLogger("test")
SPACE = {"graphs": ["passes", "transformer"], "modes": ["dynamic", "static"]}


def _search(skit, tmp_path, build):
    export = skit.write_export(tmp_path / "export", skit.elementwise_model)
    passes = tmp_path / "passes"
    skit.elementwise_model(passes / "model.onnx")
    out = tmp_path / "model"
    quantize_build(build, skit.model_spec(64), passes, out, LOG, build_name="b", export_dir=export)
    return export, out, json.loads((out / SEARCH_FILE).read_text())


def test_int8_cannot_win_ships_fp32(skit, tmp_path, bench_lock):
    export, out, record = _search(skit, tmp_path, skit.auto_build(SPACE, min_cosine=0.9))
    names = [c["name"] for c in record["candidates"]]
    # no transformer variant for an Add/Mul graph; dynamic and static int8 both tried
    assert names == ["fp32", "dynamic-pc", "static-pc-minmax"]
    # dynamic int8 has nothing to quantize in Add/Mul: left out as unchanged, not measured
    status = {c["name"]: c["status"] for c in record["candidates"]}
    assert status == {"fp32": "ok", "dynamic-pc": "unchanged", "static-pc-minmax": "ok"}
    assert "skipped" in record["graphs"]["transformer"]
    assert record["choice"]["chosen"] == "fp32"
    assert "shipped the fp32-optimized model" in record["choice"]["reason"]
    # the shipped model is the passes' output
    assert (out / "model.onnx").read_bytes() == (tmp_path / "passes" / "model.onnx").read_bytes()
    quant = json.loads((out / "quantization.json").read_text())
    assert quant["info"]["float_chosen"] is True
    # replay: the same recorded numbers give the same choice
    assert choose(record["candidates"]) == record["choice"]

    # the evaluate stage merges the search and gives the build its own verdict
    from pipeline.evaluate.metrics import evaluate_build

    build = skit.auto_build(SPACE, min_cosine=0.9)
    metrics = evaluate_build(build, skit.model_spec(64), out, export, LOG, name="b")
    assert metrics["search"]["chosen"] == "fp32"
    assert metrics["search"]["reason"] == record["choice"]["reason"]
    assert {c["name"] for c in metrics["search"]["candidates"]} == set(names)
    assert metrics["verdict"] == "unchanged"  # fp32 shipped, and it is the export's graph


def test_every_candidate_failing_ships_fp32_with_fails_gates(skit, tmp_path, bench_lock):
    # no build of y = (x + 1) * 2 is 50x faster than the export
    _, out, record = _search(skit, tmp_path, skit.auto_build({"graphs": ["passes"], "modes": ["static"]}, min_speedup=50))
    choice = record["choice"]
    assert choice["chosen"] == "fp32" and choice["verdict"] == "fails_gates"
    assert "every candidate fails the gates" in choice["reason"]
    assert "best candidate static-pc-minmax" in choice["reason"] and "< min_speedup 50" in choice["reason"]
    assert (out / "model.onnx").read_bytes() == (tmp_path / "passes" / "model.onnx").read_bytes()


def test_auto_needs_the_export_folder(skit, tmp_path):
    passes = tmp_path / "passes"
    skit.elementwise_model(passes / "model.onnx")
    with pytest.raises(StageError, match="--export"):
        quantize_build(skit.auto_build(SPACE), skit.model_spec(64), passes, tmp_path / "model", LOG, build_name="b")
    assert not (tmp_path / "model").exists()
