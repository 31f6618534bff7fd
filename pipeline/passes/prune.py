"""Unstructured magnitude pruning: zero the smallest-magnitude weights of Conv / Gemm / MatMul nodes.

Weights are the float initializers with two or more dimensions that those nodes consume (biases
are left alone). The info records the sparsity achieved per tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.passes.base import Pass, PassContext, save_like
from pipeline.schema import Strict

_FLOATS = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def prune_array(weights, sparsity: float):
    """A copy of ``weights`` with the ``round(sparsity * size)`` smallest magnitudes set to zero."""
    import numpy as np

    flat = weights.reshape(-1).copy()
    k = int(round(sparsity * flat.size))
    if k > 0:
        idx = np.argpartition(np.abs(flat.astype(np.float64)), k - 1)[:k]
        flat[idx] = 0
    return flat.reshape(weights.shape)


class Prune(Pass):
    name = "prune"

    class Params(Strict):
        sparsity: float = Field(0.5, ge=0.0, lt=1.0)  # fraction of each weight tensor set to zero
        op_types: list[str] = Field(default_factory=lambda: ["Conv", "Gemm", "MatMul"], min_length=1)

    def run(self, src: Path, dst: Path, params: Params, ctx: PassContext) -> dict[str, Any]:
        import numpy as np
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(src))
        inits = {init.name: init for init in model.graph.initializer}
        targets: list[str] = []
        for node in model.graph.node:
            if node.op_type not in params.op_types:
                continue
            for name in node.input:
                init = inits.get(name)
                if init is not None and init.data_type in _FLOATS and len(init.dims) >= 2 and name not in targets:
                    targets.append(name)
        per_tensor: dict[str, float] = {}
        zeros = total = 0
        for name in targets:
            init = inits[name]
            pruned = prune_array(numpy_helper.to_array(init), params.sparsity)
            init.CopyFrom(numpy_helper.from_array(pruned, name))
            nz = int(np.count_nonzero(pruned == 0))
            per_tensor[name] = round(nz / pruned.size, 6)
            zeros += nz
            total += pruned.size
        if not targets:
            ctx.log.info("prune: no %s weight initializers found", "/".join(params.op_types))
        save_like(model, dst, src)
        return {
            "target_sparsity": params.sparsity,
            "sparsity": per_tensor,
            "overall_sparsity": round(zeros / total, 6) if total else 0.0,
            "tensors": len(targets),
        }
