"""Float16 conversion with onnxconverter-common, validated by loading and running it in ONNX Runtime.

The converter clamps weights to +-1e4, keeps some ops (Resize, Range, TopK, ...) in float32 by default
and has known ``keep_io_types`` ordering bugs: the result is always loaded and run once here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import first_line
from pipeline.passes.base import Pass, PassContext, copy_model, save_like
from pipeline.schema import Strict


def smoke_run(path: Path, dims: dict[str, int]) -> list[Any]:
    """Load ``path`` in ONNX Runtime (CPU) and run it once on random inputs shaped from the graph."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else dims.get(str(d), 1) for d in inp.shape]
        kind = inp.type[len("tensor(") : -1]
        dtype = {"float": np.float32, "float16": np.float16, "double": np.float64, "bool": np.bool_}.get(kind)
        if dtype is None:  # integer inputs (int64, int32, uint8, ...): small non-negative values
            feed[inp.name] = rng.integers(0, 2, size=shape).astype(np.dtype(kind))
        elif dtype is np.bool_:
            feed[inp.name] = rng.random(size=shape) < 0.5
        else:
            feed[inp.name] = rng.random(size=shape).astype(dtype)
    return session.run(None, feed)


class Float16(Pass):
    name = "fp16"

    class Params(Strict):
        keep_io_types: bool = True  # inputs and outputs stay float32 (Cast nodes at the edges)
        op_block_list: list[str] | None = None  # ops kept in float32; None: the converter's default list

    def run(self, src: Path, dst: Path, params: Params, ctx: PassContext) -> dict[str, Any]:
        import onnx
        from onnxconverter_common import float16

        model = onnx.load(str(src))
        block = params.op_block_list if params.op_block_list is not None else list(float16.DEFAULT_OP_BLOCK_LIST)
        if float16.check_if_fp16_ready(model.graph):
            copy_model(src, dst)
            return {"reason": "already float16: left unchanged", "op_block_list": block}
        converted = float16.convert_float_to_float16(
            model, keep_io_types=params.keep_io_types, op_block_list=block
        )
        save_like(converted, dst, src)
        try:
            smoke_run(dst, ctx.dims)
        except Exception as exc:
            first = first_line(exc)
            raise RuntimeError(
                f"the float16 model does not run in ONNX Runtime ({first}); "
                "add the failing op types to fp16.op_block_list"
            ) from exc
        kept = sum(1 for node in converted.graph.node if node.op_type in block)
        return {"op_block_list": block, "nodes_kept_float32": kept, "keep_io_types": params.keep_io_types}
