"""Execution targets: name -> Target (an ONNX Runtime execution provider with session settings).

A build's ``target: {name: cpu, threads: 1, ...}`` is validated against ``TARGETS[name].Params``.
"""

from __future__ import annotations

from pipeline.registry import Registry
from pipeline.targets.accelerators import ACCELERATORS
from pipeline.targets.base import SessionParams, Target
from pipeline.targets.cpu import CpuTarget

TARGETS: Registry[type[Target]] = Registry(
    "target",
    {
        "cpu": CpuTarget,
        **ACCELERATORS,  # cuda, tensorrt, rocm, openvino, dnnl, xnnpack, coreml, qnn
    },
)


def get_target(name: str, key: str = "target.name", source: str | None = None) -> Target:
    """An instance of the target registered as ``name`` (ConfigError listing the names otherwise)."""
    return TARGETS.get_or_raise(name, key=key, source=source)()


__all__ = ["TARGETS", "SessionParams", "Target", "get_target"]
