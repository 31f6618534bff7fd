"""onnxoptimizer: ONNX-level fusions and eliminations (fuse BatchNorm into Conv, drop Identity, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import field_validator

from pipeline.passes.base import Pass, PassContext, save_like
from pipeline.schema import Strict


def available_passes() -> list[str]:
    import onnxoptimizer

    return list(onnxoptimizer.get_available_passes())


class OnnxOptimizer(Pass):
    name = "onnxoptimizer"

    class Params(Strict):
        # None: onnxoptimizer's fuse-and-eliminate list (onnxoptimizer.get_fuse_and_elimination_passes())
        passes: list[str] | None = None
        fixed_point: bool = False  # repeat the fusions until nothing changes

        @field_validator("passes")
        @classmethod
        def _known(cls, value: list[str] | None) -> list[str] | None:
            if value is None:
                return value
            known = available_passes()
            unknown = [p for p in value if p not in known]
            if unknown:
                raise ValueError(
                    f"unknown onnxoptimizer pass(es) {unknown} (valid choices: {', '.join(sorted(known))})"
                )
            if not value:
                raise ValueError("an empty pass list does nothing: remove the pass or use null for the defaults")
            return value

    def run(self, src: Path, dst: Path, params: Params, ctx: PassContext) -> dict[str, Any]:
        import onnx
        import onnxoptimizer

        passes = params.passes if params.passes is not None else onnxoptimizer.get_fuse_and_elimination_passes()
        model = onnx.load(str(src))
        optimized = onnxoptimizer.optimize(model, list(passes), fixed_point=params.fixed_point)
        save_like(optimized, dst, src)
        return {"optimizer_passes": list(passes), "fixed_point": params.fixed_point}
