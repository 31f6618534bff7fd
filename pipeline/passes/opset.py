"""Opset conversion with onnx.version_converter (e.g. lift an old model to 13+ before per-channel QDQ)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import field_validator

from pipeline.errors import first_line
from pipeline.passes.base import Pass, PassContext, copy_model, save_like
from pipeline.schema import Strict


def onnx_opset(model) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise ValueError("the model imports no default (ai.onnx) opset")


def convert_opset(model, version: int):
    """``model`` converted to ``version``; a clear error when onnx cannot convert it."""
    import onnx

    current = onnx_opset(model)
    try:
        converted = onnx.version_converter.convert_version(model, version)
    except Exception as exc:  # onnx raises RuntimeError / ValueError / its C++ errors
        cause = first_line(exc)
        raise ValueError(f"onnx.version_converter cannot convert opset {current} -> {version}: {cause}") from exc
    return converted


class Opset(Pass):
    name = "opset"

    class Params(Strict):
        version: int

        @field_validator("version")
        @classmethod
        def _supported(cls, value: int) -> int:
            import onnx.defs

            latest = onnx.defs.onnx_opset_version()
            if not 7 <= value <= latest:
                raise ValueError(f"opset {value} is outside what onnx {onnx.__version__} converts (7..{latest})")
            return value

    def run(self, src: Path, dst: Path, params: Params, ctx: PassContext) -> dict[str, Any]:
        import onnx

        model = onnx.load(str(src))
        current = onnx_opset(model)
        if current == params.version:
            copy_model(src, dst)
            return {"from": current, "to": params.version, "reason": "already at this opset"}
        converted = convert_opset(model, params.version)
        save_like(converted, dst, src)
        return {"from": current, "to": params.version}
