"""Graph passes, resolved by name from an explicit registry (``PASSES``).

Each pass module holds one small class with ``name``, ``Params`` and ``run(src, dst, params, ctx)``;
heavy imports (onnx, onnxruntime, onnxoptimizer) happen inside ``run``. The pass manager lives in
:mod:`pipeline.passes.base`.
"""

from __future__ import annotations

from pipeline.passes.base import Pass, PassContext, run_pass_list
from pipeline.passes.fold_affine import FoldAffine
from pipeline.passes.fp16 import Float16
from pipeline.passes.fuse_hardswish import FuseHardSwish
from pipeline.passes.onnxoptimizer import OnnxOptimizer
from pipeline.passes.opset import Opset
from pipeline.passes.ort_optimize import OrtOptimize
from pipeline.passes.prune import Prune
from pipeline.passes.shape_inference import ShapeInference
from pipeline.passes.transformer_optimize import TransformerOptimize
from pipeline.registry import Registry

PASSES: Registry[type[Pass]] = Registry(
    "pass",
    {
        cls.name: cls
        for cls in (
            ShapeInference, OnnxOptimizer, OrtOptimize, TransformerOptimize, FuseHardSwish, FoldAffine, Opset, Float16,
            Prune,
        )
    },
)

__all__ = ["PASSES", "Pass", "PassContext", "run_pass_list"]
