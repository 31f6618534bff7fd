"""ONNX shape inference: annotate every intermediate tensor with its type and shape (value_info)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.passes.base import Pass, PassContext, copy_model, uses_external_data
from pipeline.schema import Strict


class ShapeInference(Pass):
    name = "shape_inference"

    class Params(Strict):
        strict_mode: bool = False  # fail on any inference error instead of leaving shapes unknown
        data_prop: bool = True  # propagate constant values (Shape -> Reshape) to infer more shapes

    def run(self, src: Path, dst: Path, params: Params, ctx: PassContext) -> dict[str, Any]:
        import onnx

        # Path based: works for models with external data and above protobuf's 2 GB limit.
        # infer_shapes_path rewrites only the graph file; the weights keep their relative location.
        external = uses_external_data(src)
        if external:
            copy_model(src, dst)
            onnx.shape_inference.infer_shapes_path(
                str(dst), str(dst), check_type=True, strict_mode=params.strict_mode, data_prop=params.data_prop
            )
        else:
            onnx.shape_inference.infer_shapes_path(
                str(src), str(dst), check_type=True, strict_mode=params.strict_mode, data_prop=params.data_prop
            )
        model = onnx.load(str(dst), load_external_data=False)
        graph = model.graph
        annotated = {vi.name for vi in [*graph.value_info, *graph.output]}
        produced = {out for node in graph.node for out in node.output if out}
        unknown = sorted(produced - annotated)
        return {"value_info": len(graph.value_info), "unannotated_tensors": len(unknown), "external_data": external}
