"""The composed project as the report sees it: every build of ``params.yaml``, its model and task.

The report lists every declared build, whether or not its stages produced metrics, so it reads the
builds from the composed project rather than from the metrics folder. It reads only the few keys it
shows (params.yaml was validated when it was composed, and each stage validates its own section).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError

FP32_QUANTIZATION = "none"
FLOAT16_PASS = "fp16"  # a build running this pass computes in float16, not fp32


@dataclass(frozen=True)
class PlannedBuild:
    """One entry of ``builds:``: what the report can say about a build before anything ran."""

    name: str
    model: str
    task: str
    quantization: str | None
    passes: tuple[str, ...]
    target: str | None
    threads: int | None

    @property
    def fp32(self) -> bool:
        """A float32 build: no quantization and no float16 conversion."""
        return self.quantization == FP32_QUANTIZATION and FLOAT16_PASS not in self.passes


def _name_of(value: Any) -> str | None:
    """``{name: x, ...}`` (a selected option) or a bare name -> ``x``."""
    if isinstance(value, Mapping):
        return value.get("name")
    return value if isinstance(value, str) else None


def _default_task() -> str:
    from pipeline.schema import ModelSpec

    return ModelSpec.model_fields["task"].default


def planned_builds(params: Mapping[str, Any], source: str) -> dict[str, PlannedBuild]:
    """``{build name: PlannedBuild}`` in declaration order; one clear error for a malformed entry."""
    builds = params.get("builds")
    models = params.get("models") or {}
    if not isinstance(builds, Mapping) or not builds:
        raise ConfigError("declares no builds: compose the recipes first (`onnxbuild compose`)", key="builds",
                          source=source)
    if not isinstance(models, Mapping):
        raise ConfigError(f"expected a mapping of models, got {type(models).__name__}", key="models", source=source)
    out = {}
    for name, spec in builds.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"expected a mapping, got {spec!r}", key=f"builds.{name}", source=source)
        model = spec.get("model")
        if model not in models:
            raise ConfigError(f"unknown model {model!r}", key=f"builds.{name}.model", source=source, choices=models)
        model_spec = models[model] or {}
        target = spec.get("target")
        passes = tuple(p for p in (_name_of(p) for p in spec.get("passes") or []) if p)
        out[str(name)] = PlannedBuild(
            name=str(name),
            model=str(model),
            task=model_spec.get("task") or _default_task(),
            quantization=_name_of(spec.get("quantization")),
            passes=passes,
            target=_name_of(target),
            threads=target.get("threads") if isinstance(target, Mapping) else None,
        )
    return out


__all__ = ["FLOAT16_PASS", "FP32_QUANTIZATION", "PlannedBuild", "planned_builds"]
