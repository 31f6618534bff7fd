"""If / Loop / Scan subgraphs: finding them, and readying them for ONNX Runtime's subgraph quantization.

``quantize_dynamic(..., extra_options={"EnableSubgraph": True})`` quantizes inside subgraphs, but
only weights that are initializers: exporters often keep a subgraph's weights as ``Constant`` nodes
(Silero VAD: every Conv and LSTM weight), which the quantizer refuses ("Expected ... to be an
initializer"). :func:`lift_constants` turns those into initializers of the subgraph that holds them
(ONNX allows initializers in subgraphs; the values are unchanged). ``quantize_static`` has no
subgraph support (its QDQ quantizer and calibrator see the main graph only).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def subgraphs(graph: Any) -> Iterator[Any]:
    """Every subgraph nested in ``graph`` (If branches, Loop / Scan bodies), depth first."""
    from onnx import AttributeProto

    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield attr.g
                yield from subgraphs(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield sub
                    yield from subgraphs(sub)


def has_subgraphs(model: Any) -> bool:
    return next(subgraphs(model.graph), None) is not None


def lift_constants(model: Any) -> int:
    """Turn ``Constant`` nodes holding a tensor (``value``) inside subgraphs into initializers of
    the same subgraph; returns how many. The main graph is left as it is."""
    lifted = 0
    for graph in list(subgraphs(model.graph)):
        keep = []
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and [a.name for a in node.attribute] == ["value"]:
                tensor = type(node.attribute[0].t)()
                tensor.CopyFrom(node.attribute[0].t)
                tensor.name = node.output[0]
                graph.initializer.append(tensor)
                lifted += 1
            else:
                keep.append(node)
        if len(keep) != len(graph.node):
            del graph.node[:]
            graph.node.extend(keep)
    return lifted
