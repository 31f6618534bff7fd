"""Which nodes suffer from quantization: the error each quantized node ADDS, on calibration data.

ONNX Runtime's ``qdq_loss_debug`` compares every activation of the QDQ model with the float one
(``collect_activations`` + ``create_activation_matching`` + ``compute_activation_error``). That
measures the *accumulated* error at each tensor (errors propagate, so every node after a bad one
looks bad too), and it keeps every activation of every sample in memory.

Here each quantized node is measured on its own, with float inputs: one probe model holds the float
graph and, beside each quantized node N, a replica of N fed through N's own Q/DQ chains (the scales,
zero points and quantized weights of the QDQ model) from the *float* tensors. The probe computes,
inside the graph, ``sum((replica - float)^2)`` and ``sum(float^2)`` of N's first output, so a run
returns two scalars per node and memory does not grow with the number of samples or nodes kept.
The ranking measure is the relative RMS error ``sqrt(err / signal)`` over the ranking samples
(reported also as SQNR in dB): the error N itself adds when quantized, which is what keeping N in
float removes.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
PREFIX = "sens__"
_GRAPH_OUTPUT_SUFFIX = "_QuantizeLinear_Input"  # the QDQ quantizer renames quantized graph outputs so


@dataclass(frozen=True)
class NodeError:
    node: str
    op_type: str
    rel_error: float  # relative RMS error of the node's output with float inputs
    sqnr_db: float

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op_type": self.op_type, "rel_error": self.rel_error, "sqnr_db": self.sqnr_db}


class _Unmatched(Exception):
    """A tensor of the QDQ model with no counterpart in the float model."""


def quantized_nodes(qdq_model: Any, op_types: Collection[str] | None = None) -> list[Any]:
    """Nodes of a QDQ model (main graph) that are not Q/DQ, read at least one DequantizeLinear output
    and (when given) have one of the quantized ``op_types`` (a consumer of a quantized tensor is not
    itself quantized: keeping it in float would change nothing)."""
    dq_outputs = {o for n in qdq_model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [
        n for n in qdq_model.graph.node
        if n.op_type not in QDQ_OPS
        and (op_types is None or n.op_type in op_types)
        and any(i in dq_outputs for i in n.input)
    ]


def _has_subgraph(node: Any) -> bool:
    return any(a.g.node or len(a.graphs) for a in node.attribute)


class _ProbeBuilder:
    def __init__(self, float_model: Any, qdq_model: Any) -> None:
        self.float = float_model
        self.qdq = qdq_model
        g = float_model.graph
        self.float_tensors = (
            {i.name for i in g.input} | {i.name for i in g.initializer} | {o for n in g.node for o in n.output}
        )
        self.float_nodes = {n.name: n for n in g.node if n.name}
        self.qdq_producer = {o: n for n in qdq_model.graph.node for o in n.output}
        self.qdq_inits = {i.name: i for i in qdq_model.graph.initializer}
        self.mapped: dict[str, str] = {}
        self.new_nodes: list[Any] = []
        self.new_inits: list[Any] = []
        self.outputs: list[tuple[str, str, str, str]] = []  # node, op type, err name, signal name

    def tensor(self, name: str) -> str:
        """The probe's name for QDQ-model tensor ``name`` (copying its Q/DQ chain when needed)."""
        from onnx import helper

        if name == "":
            return ""
        if name in self.mapped:
            return self.mapped[name]
        producer = self.qdq_producer.get(name)
        if producer is not None and producer.op_type in QDQ_OPS:
            inputs = [self.tensor(i) for i in producer.input]
            outputs = [PREFIX + o for o in producer.output]
            node = helper.make_node(
                producer.op_type, inputs, outputs, name=PREFIX + (producer.name or outputs[0]), domain=producer.domain
            )
            node.attribute.extend(producer.attribute)
            self.new_nodes.append(node)
            for o, new in zip(producer.output, outputs):
                self.mapped[o] = new
            return self.mapped[name]
        if name in self.float_tensors:
            result = name
        elif name in self.qdq_inits:
            init = type(self.qdq_inits[name])()
            init.CopyFrom(self.qdq_inits[name])
            init.name = PREFIX + name
            self.new_inits.append(init)
            result = init.name
        elif name.endswith(_GRAPH_OUTPUT_SUFFIX) and name[: -len(_GRAPH_OUTPUT_SUFFIX)] in self.float_tensors:
            result = name[: -len(_GRAPH_OUTPUT_SUFFIX)]
        else:
            raise _Unmatched(name)
        self.mapped[name] = result
        return result

    def add(self, qnode: Any) -> bool:
        """A replica of ``qnode`` and its error/signal reductions; False when it cannot be matched."""
        from onnx import TensorProto, helper

        fnode = self.float_nodes.get(qnode.name)
        if fnode is None or _has_subgraph(qnode) or not fnode.output or not qnode.output:
            return False
        saved = (dict(self.mapped), len(self.new_nodes), len(self.new_inits))
        try:
            inputs = [self.tensor(i) for i in qnode.input]
        except _Unmatched:
            self.mapped, n_nodes, n_inits = saved[0], saved[1], saved[2]
            del self.new_nodes[n_nodes:]
            del self.new_inits[n_inits:]
            return False
        tag = f"{PREFIX}{len(self.outputs)}"
        outputs = [f"{tag}_out{k}" for k in range(len(qnode.output))]
        replica = helper.make_node(qnode.op_type, inputs, outputs, name=f"{tag}_{qnode.name}", domain=qnode.domain)
        replica.attribute.extend(qnode.attribute)
        ref = fnode.output[0]
        diff, diff32, ref32 = f"{tag}_diff", f"{tag}_diff32", f"{tag}_ref32"
        err, sig = f"{tag}_err", f"{tag}_sig"
        self.new_nodes += [
            replica,
            helper.make_node("Sub", [outputs[0], ref], [diff], name=f"{tag}_sub"),
            helper.make_node("Cast", [diff], [diff32], name=f"{tag}_castd", to=TensorProto.FLOAT),
            helper.make_node("Cast", [ref], [ref32], name=f"{tag}_castr", to=TensorProto.FLOAT),
            helper.make_node("ReduceSumSquare", [diff32], [err], name=f"{tag}_err", keepdims=0),
            helper.make_node("ReduceSumSquare", [ref32], [sig], name=f"{tag}_sig", keepdims=0),
        ]
        self.outputs.append((qnode.name, qnode.op_type, err, sig))
        return True

    def model(self) -> Any:
        from onnx import TensorProto, helper

        probe = type(self.float)()
        probe.CopyFrom(self.float)
        probe.graph.node.extend(self.new_nodes)
        probe.graph.initializer.extend(self.new_inits)
        for _, _, err, sig in self.outputs:
            probe.graph.output.append(helper.make_tensor_value_info(err, TensorProto.FLOAT, []))
            probe.graph.output.append(helper.make_tensor_value_info(sig, TensorProto.FLOAT, []))
        have = {(o.domain or "ai.onnx") for o in probe.opset_import}
        for entry in self.qdq.opset_import:
            if (entry.domain or "ai.onnx") not in have:
                probe.opset_import.append(entry)
        return probe


def build_probe(
    float_path: Path, qdq_path: Path, op_types: Collection[str] | None = None
) -> tuple[Any, list[tuple[str, str, str, str]]]:
    """The probe model and ``(node, op type, err output, signal output)`` per matched quantized node."""
    import onnx

    float_model = onnx.load(str(float_path))
    qdq_model = onnx.load(str(qdq_path))
    builder = _ProbeBuilder(float_model, qdq_model)
    for qnode in quantized_nodes(qdq_model, op_types):
        builder.add(qnode)
    return builder.model(), builder.outputs


def rank_nodes(
    float_path: Path,
    qdq_path: Path,
    feeds: Iterable[dict[str, Any]],
    work_dir: Path,
    op_types: Collection[str] | None = None,
) -> list[NodeError]:
    """Per quantized node, the error it adds with float inputs, most sensitive first.

    ``feeds``: input batches (a few calibration samples); only two scalars per node are kept."""
    import onnxruntime as ort

    from pipeline.onnx_utils import save_model

    probe, outputs = build_probe(Path(float_path), Path(qdq_path), op_types)
    if not outputs:
        return []
    work_dir.mkdir(parents=True, exist_ok=True)
    path = save_model(probe, work_dir / "probe.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    names = [n for _, _, err, sig in outputs for n in (err, sig)]
    err_sum = [0.0] * len(outputs)
    sig_sum = [0.0] * len(outputs)
    for feed in feeds:
        values = session.run(names, feed)
        for k in range(len(outputs)):
            err_sum[k] += float(values[2 * k])
            sig_sum[k] += float(values[2 * k + 1])
    del session
    ranked = []
    for (node, op, _, _), err, sig in zip(outputs, err_sum, sig_sum):
        rel = math.sqrt(err / sig) if sig > 0 else (0.0 if err == 0 else math.inf)
        if math.isnan(rel):
            rel = math.inf
        sqnr = -20.0 * math.log10(rel) if 0 < rel < math.inf else (math.inf if rel == 0 else -math.inf)
        ranked.append(NodeError(node=node, op_type=op, rel_error=rel, sqnr_db=sqnr))
    ranked.sort(key=lambda e: (-e.rel_error, e.node))
    return ranked
