"""Hard-swish written out as ``x * Clip(x + 3, 0, 6) / 6`` (Paddle2ONNX's export of MobileNetV3-style
nets) becomes one activation: ``HardSwish(x)`` at opset 14+, ``Mul(x, HardSigmoid(x))`` below.

Four elementwise passes over the tensor become one or two; the outputs stay the same up to float
rounding. Measured on the PP-OCRv4 text detector (24 such patterns; benchmarks/bench_quant_targets.py):
fp32 1.04-1.07x the export, and 1.17x instead of 1.08x under the same static int8 build. Only exact
matches are rewritten: constants 3, 0, 6 and 6, and intermediate results used by nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.onnx_utils import fresh_name, kept_names, names_read
from pipeline.passes.base import Pass, PassContext, save_like
from pipeline.schema import Strict

HARDSWISH_OPSET = 14  # ONNX HardSwish exists from opset 14


def _scalar(name: str, inits: dict[str, Any], producers: dict[str, Any], max_rank: int = 1) -> float | None:
    """The value of a one-element float constant of rank 0 or 1 (initializer or Constant node), else
    None. A higher rank could broadcast the result to a larger shape (rank 1 too, against a scalar:
    the caller passes ``max_rank=0`` then), an integer one changes the arithmetic, and an initializer
    that is also a graph input can be overridden at run time (the caller leaves those out of ``inits``)."""
    import numpy as np
    from onnx import numpy_helper

    if name in inits:
        value = numpy_helper.to_array(inits[name])
    else:
        node = producers.get(name)
        if node is None or node.op_type != "Constant" or not node.attribute or node.attribute[0].name != "value":
            return None
        value = numpy_helper.to_array(node.attribute[0].t)
    if value.size != 1 or value.ndim > max_rank or not np.issubdtype(value.dtype, np.floating):
        return None
    return float(value.reshape(-1)[0])


def _ranks(graph) -> dict[str, int]:
    """The rank of every tensor whose shape ``graph`` records (inputs, outputs, value_info)."""
    return {v.name: len(v.type.tensor_type.shape.dim) for v in (*graph.input, *graph.output, *graph.value_info)
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}


def fuse(model) -> int:
    """Rewrite every hard-swish pattern of the main graph in place; returns how many."""
    from onnx import helper

    from pipeline.passes.opset import onnx_opset

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_inputs = {value.name for value in graph.input}
    inits = {init.name: init for init in graph.initializer if init.name not in graph_inputs}
    # read by a subgraph (If / Loop / Scan body) counts as used elsewhere, like a graph output
    outputs = kept_names(graph)
    native = onnx_opset(model) >= HARDSWISH_OPSET
    ranks = _ranks(graph)
    inferred = False

    def rank(name: str) -> int | None:
        """``name``'s rank, from the graph or else from shape inference (run once, when needed)."""
        nonlocal ranks, inferred
        if name not in ranks and not inferred:
            import onnx

            inferred = True
            try:
                ranks = {**_ranks(onnx.shape_inference.infer_shapes(model).graph), **ranks}
            except Exception:  # noqa: BLE001 - no inferred shapes: rank-1 constants are left alone
                pass
        return ranks.get(name)

    def only_use(name: str) -> Any:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in outputs else None

    drop: set[int] = set()
    replace: dict[int, list[Any]] = {}
    # names of the new nodes and tensors: unique in the graph even when the Div is unnamed
    taken = {n.name for n in graph.node} | {name for n in graph.node for name in (*n.input, *n.output)}
    taken |= {i.name for i in graph.initializer} | graph_inputs | outputs

    def fresh(base: str) -> str:
        return fresh_name(base, taken)
    for clip in graph.node:
        if clip.op_type != "Clip" or len(clip.input) != 3:
            continue
        add = producers.get(clip.input[0])
        if add is None or add.op_type != "Add" or only_use(add.output[0]) is not clip:
            continue
        x = add.input[0]
        bounds = (_scalar(clip.input[1], inits, producers), _scalar(clip.input[2], inits, producers))
        if bounds != (0.0, 6.0):
            continue
        # a rank-1 constant added to (divided into) a scalar x makes the result rank 1: HardSwish(x) would not
        max_rank = 1 if (rank(x) or 0) >= 1 else 0
        if _scalar(add.input[1], inits, producers, max_rank) != 3.0:
            continue
        mul = only_use(clip.output[0])
        if mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([x, clip.output[0]]):
            continue
        div = only_use(mul.output[0])
        if div is None or div.op_type != "Div" or div.input[0] != mul.output[0]:
            continue
        if _scalar(div.input[1], inits, producers, max_rank) != 6.0:
            continue
        drop |= {id(add), id(clip), id(mul)}
        base = div.name or div.output[0]
        if native:
            replace[id(div)] = [helper.make_node("HardSwish", [x], [div.output[0]], name=fresh(f"{base}/HardSwish"))]
        else:
            gate = fresh(f"{base}/HardSigmoid")
            replace[id(div)] = [
                helper.make_node("HardSigmoid", [x], [gate], name=gate, alpha=1.0 / 6.0, beta=0.5),
                helper.make_node("Mul", [x, gate], [div.output[0]], name=fresh(f"{base}/Mul")),
            ]
    if replace:
        nodes = []
        for node in graph.node:
            if id(node) in replace:
                nodes.extend(replace[id(node)])
            elif id(node) not in drop:
                nodes.append(node)
        pattern_inputs = {name for node in graph.node if id(node) in drop or id(node) in replace for name in node.input}
        del graph.node[:]
        graph.node.extend(nodes)
        used = names_read(graph) | outputs | {value.name for value in graph.input}
        # the constants 3, 0, 6 that only the rewritten nodes read
        dead = pattern_inputs - used
        keep = [n for n in graph.node if n.op_type != "Constant" or not set(n.output) <= dead]
        del graph.node[:]
        graph.node.extend(keep)
        for init in [i for i in graph.initializer if i.name in dead]:
            graph.initializer.remove(init)
    return len(replace)


class FuseHardSwish(Pass):
    name = "fuse_hardswish"

    class Params(Strict):
        pass

    def run(self, src: Path, dst: Path, params: Params, ctx: PassContext) -> dict[str, Any]:
        import onnx

        from pipeline.passes.opset import onnx_opset

        model = onnx.load(str(src))
        count = fuse(model)
        written = "HardSwish" if onnx_opset(model) >= HARDSWISH_OPSET else "HardSigmoid + Mul"
        if count:
            ctx.log.info("fuse_hardswish: %d x*clip(x+3,0,6)/6 -> %s", count, written)
        else:
            ctx.log.info("fuse_hardswish: no x*clip(x+3,0,6)/6 pattern found; model unchanged")
        save_like(model, dst, src)
        return {"fused": count, "written_as": written if count else None}
