"""Model sources by framework. Each value is a module path (imported lazily, so a torch build never
imports TensorFlow) implementing ``prepare(spec, out_dir, log) -> dict`` and
``export(spec, source_dir, out_dir, log) -> dict``."""

from __future__ import annotations

import importlib
from types import ModuleType

from pipeline.registry import Registry

SOURCES: Registry[str] = Registry(
    "framework",
    {
        "torch": "pipeline.sources.torch_source",
        "keras": "pipeline.sources.keras_source",
        "tflite": "pipeline.sources.tflite_source",
        "onnx": "pipeline.sources.onnx_source",
        "transformers": "pipeline.sources.transformers_source",  # a model folder; built by the torch source
    },
)


def source_module(framework: str) -> ModuleType:
    return importlib.import_module(SOURCES.get_or_raise(framework, key="framework"))
