"""Frameworks load only where they are needed: an ONNX-only or torch-only build never imports
TensorFlow, and stage entry points that need neither framework import neither.

Each check runs in a fresh interpreter and inspects ``sys.modules`` afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("tensorflow", "keras", "tf2onnx", "torch")


def _loaded(code: str, cwd: Path = ROOT) -> dict[str, bool]:
    """Run ``code`` in a new interpreter; return which framework modules it left imported."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print("LOADED=" + json.dumps({{m: m in sys.modules for m in {FRAMEWORKS!r}}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LOADED="))
    return json.loads(line[len("LOADED="):])


STAGE_MODULES = [
    "pipeline.stages.prepare",
    "pipeline.stages.export",
    "pipeline.stages.passes",
    "pipeline.stages.quantize",
    "pipeline.stages.evaluate",
    "pipeline.stages.report",
    "pipeline.stages.runner",
]


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_stage_entry_points_import_no_framework(module):
    loaded = _loaded(f"import {module}")
    assert not any(loaded.values()), f"{module} imports {[m for m, v in loaded.items() if v]}"


def test_source_registry_and_non_torch_sources_import_no_framework():
    loaded = _loaded(
        """
        import pipeline.sources, pipeline.sources.onnx_source, pipeline.sources.keras_source
        import pipeline.sources.tflite_source, pipeline.sources.tf_convert, pipeline.sources.common
        import pipeline.models.packaged, pipeline.models.digits_keras
        from pipeline.schema import validate_model
        validate_model({"framework": "keras", "factory": {"_target_": "pipeline.models.digits_keras.build"},
                        "watch": "x", "inputs": [{"name": "input", "shape": ["batch", 8, 8, 1]}]}, "models.k")
        """
    )
    assert not any(loaded.values()), loaded


def test_onnx_only_build_imports_neither_framework(tmp_path):
    """prepare + export + passes + quantize of an ONNX-file model, through the stage functions."""
    loaded = _loaded(
        f"""
        import logging
        from pathlib import Path
        from pipeline.schema import validate_build, validate_model
        from pipeline.stages.prepare import prepare_model
        from pipeline.stages.export import export_model
        from pipeline.stages.passes import run_passes
        from pipeline.stages.quantize import quantize_build

        log = logging.getLogger("t")
        out = Path({str(tmp_path)!r})
        spec = validate_model({{"framework": "onnx", "watch": "pyproject.toml", "export": {{"opset": 13}},
            "path": "pkg://onnx/backend/test/data/light/light_squeezenet.onnx",
            "reference": {{"num_samples": 32}}}}, "models.m")
        build = validate_build({{"model": "m", "passes": [{{"name": "shape_inference"}}],
            "quantization": {{"name": "dynamic_int8"}}, "target": {{"name": "cpu"}}}}, "builds.b")
        prepare_model(spec, out / "source", log)
        export_model(spec, out / "source", out / "export", log)
        run_passes(build, spec, out / "export", out / "passes", log)
        quantize_build(build, spec, out / "passes", out / "model", log)
        assert (out / "model" / "model.onnx").is_file()
        """,
        cwd=tmp_path,
    )
    assert not any(loaded.values()), loaded


def test_torch_build_never_imports_tensorflow(tmp_path):
    loaded = _loaded(
        f"""
        import logging
        from pathlib import Path
        from pipeline.schema import validate_model
        from pipeline.stages.prepare import prepare_model
        from pipeline.stages.export import export_model

        log = logging.getLogger("t")
        out = Path({str(tmp_path)!r})
        spec = validate_model({{"framework": "torch", "watch": "x",
            "factory": {{"_target_": "pipeline.models.digits_cnn.build", "width": 4}},
            "inputs": [{{"name": "input", "shape": ["batch", 1, 8, 8]}}],
            "export": {{"exporter": "torchscript", "opset": 17}}, "reference": {{"num_samples": 32}}}}, "models.m")
        prepare_model(spec, out / "source", log)
        export_model(spec, out / "source", out / "export", log)
        assert (out / "export" / "model.onnx").is_file()
        """,
        cwd=tmp_path,
    )
    assert loaded["torch"]
    assert not (loaded["tensorflow"] or loaded["keras"] or loaded["tf2onnx"]), loaded


@pytest.mark.tf
def test_keras_build_never_imports_torch(tmp_path):
    loaded = _loaded(
        f"""
        import logging
        from pathlib import Path
        from pipeline.schema import validate_model
        from pipeline.stages.prepare import prepare_model
        from pipeline.stages.export import export_model

        log = logging.getLogger("t")
        out = Path({str(tmp_path)!r})
        spec = validate_model({{"framework": "keras", "watch": "x",
            "factory": {{"_target_": "pipeline.models.digits_keras.build", "width": 4}},
            "inputs": [{{"name": "input", "shape": ["batch", 8, 8, 1]}}],
            "export": {{"opset": 17}}, "reference": {{"num_samples": 32}}}}, "models.m")
        prepare_model(spec, out / "source", log)
        export_model(spec, out / "source", out / "export", log)
        """,
        cwd=tmp_path,
    )
    assert loaded["tensorflow"] and loaded["tf2onnx"]
    assert not loaded["torch"], loaded
