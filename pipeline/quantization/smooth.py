"""SmoothQuant: move activation outliers into the weights before int8 (Xiao et al., 2023).

A transformer's LayerNorm and Gelu outputs carry a few channels 5-15x larger than the rest (on
all-MiniLM-L6-v2: max 28 against a median channel of 1.9). Quantizing such an activation per tensor
(dynamic int8, static QDQ) spends the 256 levels on those few channels and rounds the others
coarsely. For a node ``y = x @ W`` the product is unchanged by ``x' = x / s`` and ``W' = diag(s) W``
for any per-channel ``s > 0``; with ``s_j = max|x_j|^alpha / max|W_j,:|^(1-alpha)`` the activation's
channels are evened out and the weights (quantized per output channel, and far easier to quantize)
take the difference. ``alpha`` balances the two: 0 leaves the activation alone, 1 flattens it fully.

Here: every float activation read by a MatMul, Gemm or com.microsoft Attention node whose weight is a
2-D initializer of its own gets one ``Mul`` by ``1/s`` (on the edge to those nodes only: a residual
branch that reads the same tensor keeps the original), and the nodes' weights are scaled by ``s``
in place. The float model stays exact up to rounding (checked by the tests); the per-channel maxima
come from calibration samples run one at a time, so memory does not grow with their number.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from pipeline.schema import MAX_SAMPLES, Factory, Strict

if TYPE_CHECKING:
    from pipeline.quantization.base import QuantContext

# op type -> index of its weight input; the weight's rows (axis 0) are the activation's channels,
# except for Gemm with transB=1 (axis 1)
SMOOTHABLE: dict[str, int] = {"MatMul": 1, "Gemm": 1, "Attention": 1}
SCALE_RANGE = (1e-2, 1e2)  # s is clipped to this range: a dead channel must not blow a weight row up
SUFFIX = "_smoothed"
# doc_string of the Muls smoothing inserts: the static quantizer keeps them in float (smoothing_muls)
MUL_DOC = "SmoothQuant: activation / per-channel scale"


class Smoothing(Strict):
    """``smoothing:`` of a quantizer: SmoothQuant before int8, on calibration samples."""

    alpha: float = Field(0.7, gt=0.0, lt=1.0)  # migration strength: 0 leaves activations alone
    num_samples: int = Field(32, ge=1, le=MAX_SAMPLES)
    dataset: Factory | None = None  # None: the model's calibration factory, else random input samples
    seed: int = 0


@dataclass
class Site:
    """One activation and the nodes that read it as their smoothable input."""

    activation: str
    nodes: list[Any]  # NodeProto
    axes: list[int]  # per node: the weight axis along the activation's channels
    first: int  # index of the first reader in the graph's node list (the Mul goes before it)


def _weight_axis(node: Any) -> int | None:
    """The weight axis matching the activation's channels, None when the node cannot be smoothed."""
    if node.op_type == "Gemm":
        attrs = {a.name: a.i for a in node.attribute}
        if attrs.get("transA", 0):
            return None
        return 1 if attrs.get("transB", 0) else 0
    return 0


def _pinned(graph: Any) -> set[str]:
    """Names whose value must not change: graph inputs (an initializer listed there can be fed at run
    time), graph outputs and whatever a subgraph (If / Loop / Scan body) reads."""
    from pipeline.onnx_utils import kept_names

    return {v.name for v in graph.input} | kept_names(graph)


def find_sites(model: Any, op_types: Collection[str] | None = None, exclude: Collection[str] = ()) -> list[Site]:
    """The activations that can be smoothed, in graph order: each read as input 0 by smoothable nodes
    (of ``op_types`` when given, not in ``exclude``) whose weight is a 2-D float initializer read by
    that node alone (not by a subgraph, not overridable as a graph input)."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    pinned = _pinned(model.graph)
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    sites: dict[str, Site] = {}
    for index, node in enumerate(model.graph.node):
        widx = SMOOTHABLE.get(node.op_type)
        if widx is None or node.domain not in ("", "ai.onnx", "com.microsoft") or len(node.input) <= widx:
            continue
        if (op_types is not None and node.op_type not in op_types) or node.name in exclude:
            continue
        act, weight = node.input[0], node.input[widx]
        init = inits.get(weight)
        if not act or act in inits or init is None or len(init.dims) != 2 or init.data_type != TensorProto.FLOAT:
            continue
        if readers.get(weight, 0) != 1 or weight in pinned:  # a shared weight would be scaled once per reader
            continue
        axis = _weight_axis(node)
        if axis is None:
            continue
        site = sites.setdefault(act, Site(act, [], [], index))
        site.nodes.append(node)
        site.axes.append(axis)
    return list(sites.values())


def channel_absmax(
    path: Path, feeds: Iterable[dict[str, Any]], activations: list[str], work_dir: Path
) -> dict[str, Any]:
    """Per-channel (last axis) max |x| of each activation over the feeds, one feed at a time (the
    probe model, ``path`` with those activations as outputs, is written in ``work_dir``)."""
    import numpy as np
    import onnx

    from pipeline.execution import cpu_session

    model = onnx.load(str(path))
    outputs = {o.name for o in model.graph.output}
    for name in activations:
        if name not in outputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    probe = work_dir / f"{path.stem}.smooth-probe.onnx"
    from pipeline.passes.base import save_like

    save_like(model, probe, path)
    try:
        session = cpu_session(probe)
        found: dict[str, Any] = {}
        for feed in feeds:
            for name, value in zip(activations, session.run(activations, feed)):
                arr = np.abs(np.asarray(value, dtype=np.float32))
                cur = arr.reshape(-1, arr.shape[-1]).max(axis=0) if arr.size else None
                if cur is None:
                    continue
                found[name] = cur if name not in found else np.maximum(found[name], cur)
    finally:
        for f in probe.parent.glob(f"{probe.name}*"):
            f.unlink()
    return found


def scales(x_max: Any, w_max: Any, alpha: float) -> Any:
    """``s_j = max|x_j|^alpha / max|W_j|^(1-alpha)``, 1 where either is 0, clipped to SCALE_RANGE."""
    import numpy as np

    x_max = np.asarray(x_max, dtype=np.float64)
    w_max = np.asarray(w_max, dtype=np.float64)
    live = (x_max > 0) & (w_max > 0)
    s = np.ones_like(x_max)
    s[live] = x_max[live] ** alpha / w_max[live] ** (1.0 - alpha)
    return np.clip(s, *SCALE_RANGE).astype(np.float32)


def _spread(v: Any) -> float:
    """How far the largest channel stands out: max / median of the per-channel maxima."""
    import numpy as np

    med = float(np.median(v))
    return round(float(np.max(v)) / med, 2) if med > 0 else 0.0


def smooth(
    src: Path, dst: Path, feeds: Iterable[dict[str, Any]], alpha: float,
    op_types: Collection[str] | None = None, exclude: Collection[str] = (),
) -> dict[str, Any]:
    """Write the smoothed model at ``dst``; info (sites smoothed, outlier spread before/after)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from pipeline.onnx_utils import fresh_name
    from pipeline.passes.base import save_like

    model = onnx.load(str(src))
    sites = find_sites(model, op_types, exclude)
    dst.parent.mkdir(parents=True, exist_ok=True)
    amax = channel_absmax(src, feeds, [s.activation for s in sites], dst.parent) if sites else {}
    inits = {i.name: i for i in model.graph.initializer}
    taken = {n.name for n in model.graph.node} | {o for n in model.graph.node for o in n.output} | set(inits)
    taken |= {v.name for v in model.graph.input}
    readers: dict[str, int] = {}
    producer: dict[str, Any] = {}
    pinned = _pinned(model.graph)
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
        for name in node.output:
            producer[name] = node
    inserts: list[tuple[int, Any]] = []
    done, before, after, folded = [], [], [], 0
    for site in sites:
        x_max = amax.get(site.activation)
        weights = [numpy_helper.to_array(inits[n.input[SMOOTHABLE[n.op_type]]]) for n in site.nodes]
        if x_max is None or any(w.shape[ax] != x_max.shape[0] for w, ax in zip(weights, site.axes)):
            continue  # channels do not line up (e.g. a MatMul over another axis): leave it
        w_max = np.max([np.abs(w).max(axis=1 - ax) for w, ax in zip(weights, site.axes)], axis=0)
        s = scales(x_max, w_max, alpha)
        for node, w, ax in zip(site.nodes, weights, site.axes):
            shaped = s[:, None] if ax == 0 else s[None, :]
            name = node.input[SMOOTHABLE[node.op_type]]
            inits[name].CopyFrom(numpy_helper.from_array((w * shaped).astype(np.float32), name))
        done.append(site.activation)
        before.append(_spread(x_max))
        after.append(_spread(x_max / s))
        # folding changes the activation itself: only when the site's nodes are all that read it
        if readers.get(site.activation) == len(site.nodes) and site.activation not in pinned and _fold_into_attention(
            producer.get(site.activation), site.activation, 1.0 / s, inits, readers, pinned
        ):
            folded += 1
            continue
        out = fresh_name(site.activation + SUFFIX, taken)
        # not "<out>_scale": ONNX Runtime's quantizers name their own tensors "<input>_scale" etc.
        inv = fresh_name(site.activation + "_smooth_inverse", taken)
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv))
        mul = helper.make_node(
            "Mul", [site.activation, inv], [out], name=fresh_name(site.activation + "_SmoothMul", taken), doc_string=MUL_DOC
        )
        for node in site.nodes:
            node.input[0] = out
        inserts.append((site.first, mul))
    nodes = list(model.graph.node)
    for index, mul in sorted(inserts, key=lambda t: -t[0]):  # before the first reader, back to front
        nodes.insert(index, mul)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    save_like(model, dst, src)
    return {
        "alpha": alpha,
        "activations": len(done),
        "nodes": sum(len(s.nodes) for s in sites if s.activation in done),
        "folded": folded,  # scales folded into an Attention node's V projection (no Mul)
        "outlier_spread_before": round(float(np.median(before)), 2) if before else None,
        "outlier_spread_after": round(float(np.median(after)), 2) if after else None,
    }


def smoothing_muls(path: Path) -> list[str]:
    """The names of the Muls :func:`smooth` inserted into the model at ``path``. A quantizer must keep
    them in float: quantized (QLinearMul, or Q/DQ on their inputs), the activation is rounded per
    tensor before the division, with its outlier channels (and 1/s goes to 8 bits), which undoes
    the smoothing."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type == "Mul" and n.doc_string == MUL_DOC]


def _fold_into_attention(
    node: Any, output: str, inverse: Any, inits: dict[str, Any], readers: dict[str, int], pinned: set[str],
) -> bool:
    """Scale channel j of a com.microsoft Attention node's output by ``inverse[j]`` inside the node:
    the output is softmax(Q K^T) V per head, so scaling V's projection (weight columns and bias of
    its third block) scales it exactly. Only for a plain Attention (equal Q/K/V sizes, no state
    outputs) whose weight and bias are initializers of its own; True when folded."""
    import numpy as np
    from onnx import numpy_helper

    if node is None or node.op_type != "Attention" or node.domain != "com.microsoft" or node.output[0] != output:
        return False
    if any(o for o in node.output[1:]) or any(a.name == "qkv_hidden_sizes" for a in node.attribute):
        return False
    if len(node.input) < 3 or not all(n in inits and readers.get(n) == 1 and n not in pinned for n in node.input[1:3]):
        return False
    weight = numpy_helper.to_array(inits[node.input[1]])
    bias = numpy_helper.to_array(inits[node.input[2]])
    hidden = inverse.shape[0]
    if weight.ndim != 2 or weight.shape[1] != 3 * hidden or bias.shape != (3 * hidden,):
        return False
    weight, bias = weight.copy(), bias.copy()
    weight[:, 2 * hidden :] *= inverse[None, :]
    bias[2 * hidden :] *= inverse
    inits[node.input[1]].CopyFrom(numpy_helper.from_array(weight.astype(np.float32), node.input[1]))
    inits[node.input[2]].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), node.input[2]))
    return True


def apply(
    src: Path, spec: Smoothing, ctx: QuantContext, op_types: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> tuple[Path, dict[str, Any]]:
    """Smooth ``src`` as a quantizer's ``smoothing:`` asks: ``(model to quantize, info)``."""
    from pipeline.quantization.calibration import batches, calibration_samples

    arrays, origin = calibration_samples(src, spec.dataset, spec.num_samples, spec.seed, ctx)
    feeds = batches(src, arrays, max_batch=1, model_spec=ctx.model_spec)
    dst = Path(ctx.work_dir) / "smoothed" / "model.onnx"
    info = smooth(src, dst, feeds, spec.alpha, op_types, exclude)
    info.update(samples=len(next(iter(arrays.values()))) if arrays else 0, source=origin)
    ctx.log.info(
        "smoothing (alpha %.2f): %d activation(s) feeding %d node(s); largest channel / median %s -> %s",
        spec.alpha, info["activations"], info["nodes"], info["outlier_spread_before"], info["outlier_spread_after"],
    )
    return dst, info
