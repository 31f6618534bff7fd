"""Shared plumbing of quantizers: the contract, the context, exclusions checked against the graph."""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.errors import ConfigError, first_line
from pipeline.schema import Strict

if TYPE_CHECKING:
    from pipeline.schema import BuildSpec, ModelSpec

STAGE = "quantize"
_SHOWN_NAMES = 20  # node names listed in an "unknown node" error


@dataclass
class QuantContext:
    """What a quantizer may need: the model spec (inputs, dims, calibration factory), a logger, a
    scratch folder, and where its params came from (for error messages)."""

    model_spec: ModelSpec | None
    log: logging.Logger
    work_dir: Path
    key: str = "quantization"  # e.g. builds.cnn_int8.quantization
    model_key: str = "model"  # e.g. models.digits_cnn
    source: str | None = None  # the params file
    # for quantizers that measure candidates (auto): the build, its name and the model's export folder
    build: BuildSpec | None = None
    build_name: str | None = None
    export_dir: Path | None = None

    @property
    def dims(self) -> dict[str, int]:
        return dict(self.model_spec.export.dims) if self.model_spec is not None else {"batch": 1}


class Quantizer(abc.ABC):
    """A quantizer. Subclasses set ``name`` and ``Params`` (with ``name: Literal[...]``) and implement run."""

    name: ClassVar[str]
    Params: ClassVar[type[Strict]]

    @abc.abstractmethod
    def run(self, src: Path, dst: Path, params: Any, ctx: QuantContext) -> dict[str, Any]:
        """Read ``src``, write the quantized model at ``dst``; return info for quantization.json."""


def graph_summary(path: Path) -> tuple[list[str], set[str]]:
    """Node names (in graph order, unnamed nodes skipped) and op types of the main graph, then of
    its If / Loop / Scan subgraphs (ONNX Runtime's subgraph quantization honours exclusions there)."""
    import onnx

    from pipeline.quantization.subgraphs import subgraphs

    model = onnx.load(str(path), load_external_data=False)
    nodes = [*model.graph.node, *(node for graph in subgraphs(model.graph) for node in graph.node)]
    names = [node.name for node in nodes if node.name]
    ops = {node.op_type for node in nodes}
    return names, ops


def check_exclusions(
    path: Path,
    nodes_to_exclude: Sequence[str],
    op_type_lists: dict[str, Sequence[str] | None],
    ctx: QuantContext,
) -> None:
    """Unknown node names are errors listing (some of) the graph's node names; op types that are no
    ONNX op and not in the graph (a typo) are errors listing the graph's op types."""
    import onnx.defs

    names, ops = graph_summary(path)
    unknown = [n for n in nodes_to_exclude if n not in set(names)]
    if unknown:
        shown = names[:_SHOWN_NAMES]
        more = f"; first {len(shown)} of {len(names)} node names listed" if len(names) > len(shown) else ""
        raise ConfigError(
            f"unknown node name(s) {unknown} in the model{more}",
            key=f"{ctx.key}.nodes_to_exclude",
            source=ctx.source,
            choices=shown,
        )
    for field, op_types in op_type_lists.items():
        for op in op_types or []:
            if op not in ops and not onnx.defs.has(op):
                raise ConfigError(
                    f"'{op}' is not an ONNX op type", key=f"{ctx.key}.{field}", source=ctx.source, choices=ops
                )
            if op not in ops:
                ctx.log.info("%s: the model has no %s node", field, op)


def op_types_to_quantize(requested: Sequence[str] | None, exclude: Sequence[str], default: Sequence[str]) -> list[str] | None:
    """The op types handed to ONNX Runtime: the requested ones (or its default set) minus exclusions.

    None means ONNX Runtime's own default (no exclusions asked for)."""
    if not exclude:
        return list(requested) if requested else None
    base = list(requested) if requested else sorted(default)
    return [op for op in base if op not in set(exclude)]


def onnx_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 0


def has_contrib_ops(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(node.domain == "com.microsoft" for node in model.graph.node)


# Ops that exist only in quantized graphs (QDQ pairs, dynamic quantization, integer / QLinear kernels,
# ONNX Runtime's quantized contrib ops); op types starting with a prefix below count too.
QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "QAttention", "QGemm",
    "QEmbedLayerNormalization", "MatMulNBits", "MatMulBnb4", "GatherBlockQuantized", "DequantizeBFP",
    "QuantizeBFP", "DequantizeWithOrder", "QuantizeWithOrder",
})
QUANTIZED_PREFIXES = ("QLinear", "QOrdered")


@dataclass(frozen=True)
class QuantizedCount:
    """Quantization nodes of a model: in all its graphs, and in its If / Loop / Scan subgraphs."""

    total: int
    in_subgraphs: int


def is_quantized_op(op_type: str) -> bool:
    return op_type in QUANTIZED_OPS or op_type.startswith(QUANTIZED_PREFIXES)


def count_quantized_nodes(model: Any) -> QuantizedCount:
    """Nodes whose op is a quantization op (:data:`QUANTIZED_OPS`, ``QLinear*``, ``QOrdered*``),
    counted in the main graph and every subgraph."""
    from pipeline.quantization.subgraphs import subgraphs

    main = sum(is_quantized_op(n.op_type) for n in model.graph.node)
    nested = sum(is_quantized_op(n.op_type) for g in subgraphs(model.graph) for n in g.node)
    return QuantizedCount(total=main + nested, in_subgraphs=nested)


def check_loads(path: Path) -> None:
    """The quantized model must load in ONNX Runtime (CPU)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = first_line(exc)
        raise RuntimeError(f"the quantized model does not load in ONNX Runtime: {first}") from exc
