"""Dynamic int8 quantization: int8 weights, activations quantized at run time (uint8).

Fast for MatMul/Gemm-heavy models (transformers); Conv-heavy models gain little (ConvInteger has
no fast kernel), which the evaluation measures. Graphs that already hold com.microsoft fused ops
get ``DefaultTensorType=FLOAT`` so that ONNX Runtime can type their weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipeline.passes.base import uses_external_data
from pipeline.quantization.base import (
    QuantContext,
    Quantizer,
    check_exclusions,
    check_loads,
    has_contrib_ops,
    op_types_to_quantize,
)
from pipeline.quantization.smooth import Smoothing
from pipeline.schema import Strict

MIN_OPSET = 11


class DynamicInt8(Quantizer):
    name = "dynamic_int8"

    class Params(Strict):
        name: Literal["dynamic_int8"] = "dynamic_int8"
        per_channel: bool = True
        reduce_range: bool = False
        weight_type: Literal["int8", "uint8"] = "int8"
        op_types_to_quantize: list[str] | None = None  # None: every op type ONNX Runtime quantizes dynamically
        op_types_to_exclude: list[str] = Field(default_factory=list)
        nodes_to_exclude: list[str] = Field(default_factory=list)
        preprocess: bool = True
        smoothing: Smoothing | None = None  # SmoothQuant first (pipeline/quantization/smooth.py)

    def run(self, src: Path, dst: Path, params: Params, ctx: QuantContext) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.registry import IntegerOpsRegistry

        from pipeline.quantization.preprocess import prepare

        check_exclusions(
            src,
            params.nodes_to_exclude,
            {"op_types_to_quantize": params.op_types_to_quantize, "op_types_to_exclude": params.op_types_to_exclude},
            ctx,
        )
        model_in, info = prepare(src, ctx.work_dir, min_opset=MIN_OPSET, run_preprocess=params.preprocess, log=ctx.log)
        extra: dict[str, Any] = {}
        model_in, info["subgraphs"] = _ready_subgraphs(model_in, ctx)
        if info["subgraphs"] is not None:
            extra["EnableSubgraph"] = True  # quantize inside If / Loop / Scan bodies too
        if has_contrib_ops(model_in):
            # quantize_dynamic cannot type weights feeding fused com.microsoft ops otherwise
            extra["DefaultTensorType"] = onnx.TensorProto.FLOAT
            info["default_tensor_type"] = "float"
        ops = op_types_to_quantize(params.op_types_to_quantize, params.op_types_to_exclude, set(IntegerOpsRegistry))
        info["smoothing"] = None
        if params.smoothing is not None:
            from pipeline.quantization.smooth import apply

            model_in, info["smoothing"] = apply(
                model_in, params.smoothing, ctx, ops or set(IntegerOpsRegistry), params.nodes_to_exclude
            )
        external = uses_external_data(model_in)
        t0 = time.perf_counter()
        quantize_dynamic(
            str(model_in),
            str(dst),
            op_types_to_quantize=ops,
            per_channel=params.per_channel,
            reduce_range=params.reduce_range,
            weight_type=QuantType.QInt8 if params.weight_type == "int8" else QuantType.QUInt8,
            nodes_to_exclude=list(params.nodes_to_exclude),
            use_external_data_format=external,
            extra_options=extra,
        )
        check_loads(dst)
        info.update(
            {
                "per_channel": params.per_channel,
                "reduce_range": params.reduce_range,
                "activation_type": "uint8 (dynamic)",
                "weight_type": params.weight_type,
                "op_types_to_quantize": ops,
                "nodes_to_exclude": list(params.nodes_to_exclude),
                "calibration_samples": 0,
                "external_data": external,
                "quantize_seconds": round(time.perf_counter() - t0, 4),
            }
        )
        return info


def _ready_subgraphs(model_in: Path, ctx: QuantContext) -> tuple[Path, dict[str, Any] | None]:
    """A model with If / Loop / Scan subgraphs gets its subgraph weights lifted from Constant nodes to
    initializers (ONNX Runtime quantizes only initializer weights); ``(model to quantize, info)``,
    info None when the model has no subgraphs."""
    from pipeline.onnx_utils import load_model, save_model
    from pipeline.quantization.subgraphs import has_subgraphs, lift_constants

    if not has_subgraphs(load_model(model_in, load_external_data=False)):
        return model_in, None
    model = load_model(model_in)
    lifted = lift_constants(model)
    if lifted:
        out = ctx.work_dir / "subgraphs" / "model.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, out)
        model_in = out
    ctx.log.info("subgraphs: quantized with EnableSubgraph; %d Constant node(s) in subgraphs made initializers", lifted)
    return model_in, {"enable_subgraph": True, "constants_lifted": lifted}
