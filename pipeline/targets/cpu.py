"""Target ``cpu``: ONNX Runtime's CPUExecutionProvider."""

from __future__ import annotations

from typing import Any, Literal

from pipeline.hardware import cpu_info
from pipeline.targets.base import SessionParams, Target


class CpuParams(SessionParams):
    name: Literal["cpu"] = "cpu"


class CpuTarget(Target):
    name = "cpu"
    provider = "CPUExecutionProvider"
    Params = CpuParams

    def describe(self, params: SessionParams) -> dict[str, Any]:
        info = super().describe(params)
        info["cores"] = cpu_info()["cores"]
        return info
