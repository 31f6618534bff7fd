"""Before quantizing: lift old opsets and run ONNX Runtime's quant_pre_process, handling its traps.

- Per-channel QDQ needs opset 13+ (DequantizeLinear's ``axis``); older models are converted first.
- ``quant_pre_process`` raises "Incomplete symbolic shape inference" on many real models; it is
  retried with ``skip_symbolic_shape=True``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.errors import first_line
from pipeline.passes.base import copy_model, save_like, uses_external_data
from pipeline.quantization.base import onnx_opset


def upgrade_opset(src: Path, dst: Path, min_version: int, log: logging.Logger) -> dict[str, Any] | None:
    """Convert ``src`` to ``min_version`` at ``dst`` when it is older; None (nothing written) otherwise."""
    import onnx

    from pipeline.passes.opset import convert_opset

    current = onnx_opset(src)
    if current >= min_version:
        return None
    log.info("opset %d is below %d: converting with onnx.version_converter", current, min_version)
    converted = convert_opset(onnx.load(str(src)), min_version)
    save_like(converted, dst, src)
    return {"from": current, "to": min_version}


def _ort_tools_without_torch() -> None:
    """``onnxruntime/tools/__init__.py`` imports torch whenever torch is installed (for its PyTorch
    export helpers); ``quant_pre_process`` only needs ``tools.symbolic_shape_infer``. Register the
    package without running that ``__init__`` so an ONNX-only build never loads torch."""
    import os
    import sys
    import types

    import onnxruntime

    if "onnxruntime.tools" not in sys.modules:
        pkg = types.ModuleType("onnxruntime.tools")
        pkg.__path__ = [os.path.join(os.path.dirname(onnxruntime.__file__), "tools")]
        pkg.__package__ = "onnxruntime.tools"
        sys.modules["onnxruntime.tools"] = pkg


def preprocess(src: Path, dst: Path, log: logging.Logger) -> dict[str, Any]:
    """``quant_pre_process`` (symbolic shape inference, basic optimization, ONNX shape inference)."""
    import contextlib

    from onnxruntime.quantization.shape_inference import quant_pre_process

    _ort_tools_without_torch()
    src, dst = Path(src).resolve(), Path(dst).resolve()

    external = uses_external_data(src)
    kwargs: dict[str, Any] = {}
    if external:
        kwargs = {
            "save_as_external_data": True,
            "all_tensors_to_one_file": True,
            "external_data_location": dst.name + ".data",
        }
    try:
        # symbolic shape inference dumps "sym_shape_infer_temp.onnx" into the working directory when it
        # fails: keep that inside our work folder, not the user's checkout
        with contextlib.chdir(dst.parent):
            quant_pre_process(str(src), str(dst), **kwargs)
        return {"symbolic_shape_inference": True}
    except Exception as exc:  # "Incomplete symbolic shape inference" and kin, on real models
        reason = first_line(exc)
        log.info("quant_pre_process failed (%s): retrying with skip_symbolic_shape=True", reason)
    for stale in (dst, dst.parent / (dst.name + ".data")):
        stale.unlink(missing_ok=True)
    with contextlib.chdir(dst.parent):
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True, **kwargs)
    return {"symbolic_shape_inference": False, "retried_because": reason}


def prepare(
    src: Path, work: Path, *, min_opset: int, run_preprocess: bool, log: logging.Logger
) -> tuple[Path, dict[str, Any]]:
    """Opset upgrade (if needed) then pre-processing (if asked); returns the model to quantize and info."""
    info: dict[str, Any] = {}
    current = src
    upgraded = upgrade_opset(current, work / "upgraded" / "model.onnx", min_opset, log)
    if upgraded is not None:
        info["opset_upgrade"] = upgraded
        current = work / "upgraded" / "model.onnx"
    if run_preprocess:
        out = work / "preprocessed" / "model.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        info["preprocess"] = preprocess(current, out, log)
        current = out
    else:
        info["preprocess"] = None
    if current == src:  # quantize a private copy: ONNX Runtime writes beside its input
        current = copy_model(src, work / "input" / "model.onnx")
    return current, info
