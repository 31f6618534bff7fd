"""ONNX Runtime offline graph optimization (basic / extended / all), saved as a new ONNX file.

Above ``basic`` the result holds fusions and layouts chosen for the CPU it was optimized on: the
artifact belongs to that target, and the info says so with the CPU's model and ISA flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pipeline.passes.base import Pass, PassContext, uses_external_data
from pipeline.schema import Strict

LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OrtOptimize(Pass):
    name = "ort_optimize"

    class Params(Strict):
        level: Literal["basic", "extended", "all"] = "basic"

    def run(self, src: Path, dst: Path, params: Params, ctx: PassContext) -> dict[str, Any]:
        import onnxruntime as ort

        from pipeline.hardware import cpu_info

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[params.level])
        options.optimized_model_filepath = str(dst)
        external = uses_external_data(src)
        if external:
            # keep the weights in external data, named after the new file
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", dst.name + ".data"
            )
            options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        session = ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        del session
        target_specific = params.level != "basic"
        info: dict[str, Any] = {
            "level": params.level,
            "target_specific": target_specific,
            "onnxruntime": ort.__version__,
            "external_data": external,
        }
        if target_specific:
            cpu = cpu_info()
            info["optimized_for"] = {"cpu": cpu["model"], "arch": cpu["arch"], "isa": cpu["isa"]}
            ctx.log.warning(
                "ort_optimize level=%s: the artifact is specific to this CPU (%s)", params.level, cpu["model"]
            )
        return info
