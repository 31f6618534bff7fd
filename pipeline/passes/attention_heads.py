"""Reading a transformer's attention layout from an ONNX graph: heads, hidden size, unfused attention.

ONNX Runtime's transformer optimizer needs ``num_heads`` and ``hidden_size`` to fuse attention. Its
own detection reads them from the Q Reshape's shape when that is a constant ``[0, 0, heads,
head_size]`` (or a Concat ending in constant heads and head size); a TorchScript export of a
transformers model reshapes to ``[batch, seq, -1, head_size]`` instead, and the optimizer then fails
("Failed to detect num_heads and hidden_size"). :func:`detect_heads` reads the same subgraph more
fully:

    X ── MatMul(W: [hidden, hidden]) ── [Add bias] ── Reshape([.., .., heads | -1, head_size | -1]) ── Transpose

``hidden`` is the projection's output width; heads are the constant, or ``hidden / head_size`` when
the heads entry is -1. Every projection found votes; the most common answer wins.

:func:`attention_softmaxes` counts unfused attention: Softmax nodes whose input comes from a MatMul of
two activations (Q x K^T) and whose output feeds a MatMul (x V), each through at most a few
scaling / masking ops. A CNN's classifier Softmax is not one. Nothing here imports onnxruntime.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import onnx

_PASS_THROUGH = ("Unsqueeze", "Squeeze", "Cast", "Identity")  # ops that keep a constant's values
_SCALE_OPS = ("Add", "Mul", "Div")  # bias / scaling between the projection and the head Reshape
_SCORE_OPS = ("Add", "Mul", "Div", "Where", "Cast", "Sub")  # scaling and masking before Softmax
MAX_HOPS = 3


@dataclass(frozen=True)
class Heads:
    num_heads: int
    hidden_size: int
    votes: int  # projections that agree
    candidates: dict[str, int]  # "heads x hidden" -> votes, when projections disagree


class _Graph:
    """Producers, consumers and constant values of a graph's tensors (main graph only)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = _constant_node_value(node)
                if value is not None:
                    self.constants[node.output[0]] = value

    def value(self, name: str, depth: int = 0) -> np.ndarray | None:
        """The constant value of a tensor, following Unsqueeze/Squeeze/Cast/Identity and Concat."""
        import numpy as np

        if name in self.constants:
            return np.asarray(self.constants[name])
        node = self.producer.get(name)
        if node is None or depth > 8:
            return None
        if node.op_type in _PASS_THROUGH:
            inner = self.value(node.input[0], depth + 1)
            return None if inner is None else inner.reshape(-1)
        if node.op_type == "Concat":
            parts = [self.value(i, depth + 1) for i in node.input]
            if all(p is not None for p in parts):
                return np.concatenate([p.reshape(-1) for p in parts])
        return None

    def shape_tail(self, name: str) -> tuple[int | None, int | None]:
        """The last two entries of a Reshape's target shape (None where not constant)."""
        whole = self.value(name)
        if whole is not None:
            return (int(whole[-2]), int(whole[-1])) if whole.size >= 2 else (None, None)
        node = self.producer.get(name)
        if node is None or node.op_type != "Concat":
            return (None, None)
        entries: list[int | None] = []
        for part in node.input:  # a non-constant part of a shape Concat is one dim (Unsqueeze of a Gather)
            value = self.value(part)
            entries.extend([None] if value is None else [int(v) for v in value.reshape(-1)])
        return (entries[-2], entries[-1]) if len(entries) >= 2 else (None, None)

    def is_activation(self, name: str) -> bool:
        return self.value(name) is None


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    import numpy as np
    from onnx import helper, numpy_helper

    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_int", "value_ints", "value_float", "value_floats"):
            return np.asarray(helper.get_attribute_value(attr))
    return None


def _head_reshapes(g: _Graph, start: str) -> Iterable[onnx.NodeProto]:
    """Reshape nodes reached from a projection's output through at most two bias/scale ops."""
    frontier = [start]
    for _ in range(3):
        nxt = []
        for name in frontier:
            for node in g.consumers.get(name, []):
                if node.op_type == "Reshape" and node.input[0] == name:
                    yield node
                elif node.op_type in _SCALE_OPS:
                    nxt.extend(node.output)
        frontier = nxt


def _vote(heads_entry: int | None, head_size: int | None, hidden: int) -> int | None:
    """Heads from a head Reshape's last two entries ([.., heads, head_size]; -1 = inferred)."""
    if heads_entry is not None and heads_entry > 0:
        consistent = head_size in (None, -1) or heads_entry * head_size == hidden
        return heads_entry if consistent and hidden % heads_entry == 0 else None
    if heads_entry == -1 and head_size is not None and head_size > 0 and hidden % head_size == 0:
        return hidden // head_size
    return None


def detect_heads(model: onnx.ModelProto) -> Heads | None:
    """``num_heads`` and ``hidden_size`` read from the Q/K/V projections and their head Reshapes;
    None when no projection reshapes into heads."""
    g = _Graph(model)
    votes: Counter[tuple[int, int]] = Counter()
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2:
            continue
        weight = g.constants.get(node.input[1])
        if weight is None or weight.ndim != 2 or weight.shape[0] != weight.shape[1]:
            continue
        hidden = int(weight.shape[1])
        for reshape in _head_reshapes(g, node.output[0]):
            if not any(c.op_type == "Transpose" for c in g.consumers.get(reshape.output[0], [])):
                continue
            heads = _vote(*g.shape_tail(reshape.input[1]), hidden)
            if heads:
                votes[(heads, hidden)] += 1
    if not votes:
        return None
    (heads, hidden), count = votes.most_common(1)[0]
    others = {f"{h}x{d}": n for (h, d), n in votes.items()} if len(votes) > 1 else {}
    return Heads(num_heads=heads, hidden_size=hidden, votes=count, candidates=others)


def _reaches(g: _Graph, name: str, op_type: str, through: tuple[str, ...], hops: int = MAX_HOPS) -> onnx.NodeProto | None:
    node = g.producer.get(name)
    for _ in range(hops + 1):
        if node is None:
            return None
        if node.op_type == op_type:
            return node
        if node.op_type not in through:
            return None
        node = next((g.producer[i] for i in node.input if i in g.producer and g.is_activation(i)), None)
    return None


def attention_softmaxes(model: onnx.ModelProto) -> int:
    """Softmax nodes that sit between Q x K^T and x V: attention left unfused."""
    g = _Graph(model)
    count = 0
    for node in model.graph.node:
        if node.op_type != "Softmax":
            continue
        scores = _reaches(g, node.input[0], "MatMul", _SCORE_OPS)
        if scores is None or not all(g.is_activation(i) for i in scores.input):
            continue
        if _feeds(g, node.output[0], "MatMul", _SCORE_OPS):
            count += 1
    return count


def _feeds(g: _Graph, name: str, op_type: str, through: tuple[str, ...], hops: int = MAX_HOPS) -> bool:
    """Does tensor ``name`` reach an ``op_type`` node through at most ``hops`` ``through`` ops? (The
    SDPA export guards the probabilities with IsNaN / Where before x V.)"""
    frontier = [name]
    for _ in range(hops + 1):
        consumers = [c for t in frontier for c in g.consumers.get(t, [])]
        if any(c.op_type == op_type for c in consumers):
            return True
        frontier = [o for c in consumers if c.op_type in through for o in c.output]
    return False
