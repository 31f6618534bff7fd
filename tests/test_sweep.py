"""The sweep app's pieces: content-addressed model keys, the one-build project, the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from pipeline import leaderboard
from pipeline.schema import validate_model, validate_project
from pipeline.sweep import CONF_DIR, METRICS_FILE, POINT_FILE, model_key, point_project


@pytest.fixture(autouse=True)
def _clean_hydra():
    yield
    GlobalHydra.instance().clear()


def _sweep_cfg(*overrides):
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose("sweep", overrides=list(overrides))


def test_point_project_is_a_valid_one_build_project():
    cfg = _sweep_cfg("quantization=static_int8", "target.threads=2")
    project = validate_project(point_project(cfg, "digits_cnn"))
    build = project.builds["point"]
    assert build.model == "digits_cnn" and build.quantization.name == "static_int8"
    assert build.target.params.threads == 2


def test_model_key_is_stable_and_content_addressed(tmp_path):
    cfg = _sweep_cfg()
    data = point_project(cfg, "digits_cnn")["models"]["digits_cnn"]
    root = Path(__file__).resolve().parents[1]
    spec = validate_model(data, "models.digits_cnn")
    assert model_key(spec, root) == model_key(validate_model(data, "m"), root)
    changed = validate_model({**data, "train": {**data["train"], "epochs": 3}}, "m")
    assert model_key(changed, root) != model_key(spec, root)
    # the watch path's content is part of the key
    watched = tmp_path / "model.py"
    watched.write_text("a = 1\n")
    spec_w = validate_model({**data, "watch": str(watched)}, "m")
    before = model_key(spec_w, root)
    watched.write_text("a = 2\n")
    assert model_key(spec_w, root) != before


def _point(folder: Path, job: int, overrides: list[str], p50: float | None, status: str = "ok", error=None):
    folder.mkdir(parents=True)
    (folder / POINT_FILE).write_text(json.dumps({"job": job, "overrides": overrides, "status": status, "error": error}))
    if p50 is not None:
        metrics = {
            "build": {"model": "m", "quantization": overrides[-1].split("=")[1], "passes": [], "target": "cpu"},
            "latency_ms": {"p50": p50, "p90": p50 * 1.1},
            "speedup": 1.0 / p50,
            "model_size_mb": 1.0,
            "fidelity": {"cosine_min": 0.99, "top1_agreement": 1.0},
            "accuracy": {"top1": 0.9, "drop": 0.0},
            "gates": {"passed": status == "ok", "failures": [] if status == "ok" else ["max_p50_ms"], "checked": {}},
        }
        (folder / METRICS_FILE).write_text(json.dumps(metrics))


def test_leaderboard_ranks_by_p50_and_lists_failures_last(tmp_path):
    _point(tmp_path / "0", 0, ["evaluate.runs=10", "quantization=none"], 3.0)
    _point(tmp_path / "1", 1, ["evaluate.runs=10", "quantization=static_int8"], 1.0)
    _point(tmp_path / "2", 2, ["evaluate.runs=10", "quantization=dynamic_int8"], None, "failed", "quantize stage failed: boom")
    _point(tmp_path / "3", 3, ["evaluate.runs=10", "quantization=static_int8_qoperator"], 2.0, "gates failed", "max_p50_ms")
    out = leaderboard.write_leaderboard(tmp_path)
    rows = (tmp_path / leaderboard.CSV).read_text().splitlines()
    assert [r.split(",")[1] for r in rows[1:]] == ["1", "3", "0", "2"]
    text = out.read_text()
    assert "Every point also has: `evaluate.runs=10`" in text
    assert "failed: quantize stage failed: boom" in text and "FAIL: max_p50_ms" in text
    assert f"onnxbuild promote {tmp_path / '1'}" in text


def test_leaderboard_of_an_empty_folder_is_none(tmp_path):
    assert leaderboard.write_leaderboard(tmp_path) is None
