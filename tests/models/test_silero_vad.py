"""Silero VAD as shipped by silero-vad (a real streaming model: state fed back, a scalar sample
rate, If subgraphs): its model spec against the graph, the source run as streams on synthesized
speech (the probability crosses 0.5 within the streams), and its recipes compose."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from hydra.core.global_hydra import GlobalHydra

from pipeline.compose import compose
from pipeline.schema import validate_model
from pipeline.sources import onnx_source
from pipeline.sources.common import reference_samples, run_onnx

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
LOG = logging.getLogger("test.silero_vad")


def _spec(**reference):
    data = yaml.safe_load((CONF / "model" / "silero_vad.yaml").read_text())
    data["reference"]["dataset"].update(reference)
    data["reference"]["num_samples"] = reference.get("n", data["reference"]["num_samples"])
    return validate_model(data, "models.silero_vad")


def test_source_runs_as_a_stream_and_detects_speech(tmp_path):
    spec = _spec(n=32, steps=48)
    onnx_source.prepare(spec, tmp_path / "source", LOG)
    # the reference (and its verification) is the unmodified model run step by step
    source = onnx_source.check_file(tmp_path / "source" / "model.onnx", stage="export", check=False)
    samples = reference_samples(spec, onnx_source.graph_input_specs(source, spec))
    assert list(samples.inputs) == ["input"] and samples.inputs["input"].shape == (32, 48, 576)
    out = run_onnx(tmp_path / "source" / "model.onnx", samples.inputs, model_spec=spec)
    assert out["output"].shape == (32, 48, 1, 1) and out["stateN"].shape == (32, 48, 2, 1, 128)
    speech = out["output"][:, :, 0, 0] > 0.5
    assert (speech.any(axis=1) & (~speech).any(axis=1)).mean() >= 0.9  # above and below 0.5 in a stream
    assert (speech == samples.labels.astype(bool)).mean() > 0.85  # and mostly where the speech is


def test_recipes_compose():
    try:
        data = compose([], CONF).data  # the default project declares the model and both builds
    finally:
        GlobalHydra.instance().clear()
    fp32, int8 = data["builds"]["vad_fp32"], data["builds"]["vad_int8"]
    assert fp32["model"] == int8["model"] == "silero_vad"
    assert fp32["quantization"]["name"] == "none" and int8["quantization"]["name"] == "dynamic_int8"
    assert int8["evaluate"]["gates"]["min"] == {"iou_min": 0.95}
    assert data["models"]["silero_vad"]["stream"]["state"] == [{"output": "stateN", "input": "state"}]
