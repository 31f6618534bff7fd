"""The search space of ``quantization: auto`` and the candidates it spans.

Each dimension is a list; the candidates are their product (dynamic quantization has no calibration
method, so it spans fewer). The defaults keep a default project fast: both graph variants (the
``transformer`` variant exists only for graphs that look like transformers, when the
``transformer_optimize`` pass is registered), dynamic and static int8, per-channel, MinMax
calibration, every op type ONNX Runtime quantizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import product
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from pipeline.schema import MAX_RUNS, MAX_SAMPLES, MAX_WARMUP, Factory, Strict

Graph = Literal["passes", "transformer"]
Mode = Literal["dynamic", "static"]
Method = Literal["minmax", "entropy", "percentile"]
FLOAT = "float"
Alpha = Annotated[float, Field(gt=0.0, lt=1.0)]


class Space(Strict):
    graphs: list[Graph] = Field(default_factory=lambda: ["passes", "transformer"], min_length=1)
    modes: list[Mode] = Field(default_factory=lambda: ["dynamic", "static"], min_length=1)
    per_channel: list[bool] = Field(default_factory=lambda: [True], min_length=1)
    calibration_methods: list[Method] = Field(default_factory=lambda: ["minmax"], min_length=1)
    # each entry: a list of op types to quantize, or null for every op type ONNX Runtime quantizes
    op_types: list[list[str] | None] = Field(default_factory=lambda: [None], min_length=1)
    # SmoothQuant strength before int8 (pipeline/quantization/smooth.py), null: none; only graphs with
    # MatMul / Gemm / Attention weights get the smoothed candidates
    smoothing: list[Alpha | None] = Field(default_factory=lambda: [None], min_length=1)
    # FusionOptions of the ``transformer`` variant's transformer_optimize pass (e.g. leave
    # SkipLayerNormalization unfused: its CPU kernel is scalar, ONNX LayerNormalization + Add is faster)
    transformer_options: dict[str, bool | int] = Field(default_factory=dict)

    @field_validator("transformer_options")
    @classmethod
    def _transformer_options(cls, value: dict[str, bool | int]) -> dict[str, bool | int]:
        if value:  # the pass's own schema names the valid options
            from pydantic import ValidationError

            from pipeline.passes.transformer_optimize import TransformerOptimize

            try:
                TransformerOptimize.Params(options=value)
            except ValidationError as exc:
                raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return value


class CalibrationData(Strict):
    """Calibration data of the static candidates (the method is a search dimension)."""

    num_samples: int = Field(64, ge=1, le=MAX_SAMPLES)
    percentile: float = Field(99.999, gt=0.0, le=100.0)
    dataset: Factory | None = None  # None: the model's calibration factory, else random input samples
    seed: int = 0


class MixedPrecision(Strict):
    """Keep the most sensitive nodes in float, 1, 2, 4, ... of them (then bisect), until the
    build's fidelity and accuracy gates hold."""

    enabled: bool = True
    candidates: int = Field(1, ge=0, le=64)  # how many gate-failing candidates (closest to the gates first) get steps
    ranking_samples: int = Field(8, ge=1, le=MAX_SAMPLES)  # calibration samples that rank the nodes
    max_steps: int = Field(6, ge=1, le=64)  # quantize-and-measure steps per candidate


class Screen(Strict):
    """The cheap first look at every candidate."""

    fidelity_samples: int = Field(32, ge=1, le=MAX_SAMPLES)
    warmup: int = Field(3, ge=1, le=MAX_WARMUP)
    runs: int = Field(40, ge=4, le=MAX_RUNS)
    blocks: int = Field(4, ge=2, le=1000)


class Final(Strict):
    """The finalists, measured together against the fp32 export in one interleaved run."""

    finalists: int = Field(2, ge=1, le=64)  # best screened candidates passing the quality gates
    warmup: int = Field(10, ge=1, le=MAX_WARMUP)
    runs: int = Field(200, ge=10, le=MAX_RUNS)
    blocks: int = Field(10, ge=2, le=1000)


@dataclass(frozen=True)
class Candidate:
    """One build the search may ship. ``mode`` is ``float`` (the graph unquantized), ``dynamic``
    or ``static``; ``parent`` names the candidate a mixed-precision step derives from."""

    graph: str
    mode: str
    per_channel: bool = True
    method: str | None = None
    op_types: tuple[str, ...] | None = None
    smoothing: float | None = None
    excluded: tuple[str, ...] = ()
    parent: str | None = None
    step: int | None = None

    @property
    def name(self) -> str:
        if self.mode == FLOAT:
            base = "fp32"
        else:
            parts = [self.mode, "pc" if self.per_channel else "pt"]
            if self.method:
                parts.append(self.method)
            if self.op_types:
                parts.append("+".join(self.op_types))
            if self.smoothing is not None:
                parts.append(f"sq{self.smoothing:g}")
            base = "-".join(parts)
        if self.graph != "passes":
            base += f"@{self.graph}"
        if self.excluded:
            base += f"+float{len(self.excluded)}"
        return base

    @property
    def quantized(self) -> bool:
        return self.mode != FLOAT

    @property
    def changes(self) -> int:
        """How far from the passes' output: 0 unchanged, +1 another graph, +2 quantized (among
        candidates within noise of each other, fewer changes win)."""
        return (self.graph != "passes") + (2 if self.quantized else 0)

    def settings(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "mode": self.mode,
            "per_channel": self.per_channel if self.quantized else None,
            "calibration_method": self.method,
            "op_types": list(self.op_types) if self.op_types else None,
            "smoothing": self.smoothing,
            "nodes_to_exclude": list(self.excluded),
            "parent": self.parent,
            "step": self.step,
        }

    def excluding(self, nodes: list[str], step: int) -> Candidate:
        return replace(self, excluded=tuple(nodes), parent=self.name, step=step)


@dataclass
class Plan:
    graphs: list[str]
    candidates: list[Candidate] = field(default_factory=list)


def float_candidates(graphs: list[str]) -> list[Candidate]:
    """The unquantized graphs: ``fp32`` (the passes' output: the fp32-optimized model) first."""
    return [Candidate(graph=g, mode=FLOAT) for g in graphs]


def quantizable_ops(mode: str) -> set[str]:
    """The op types ONNX Runtime quantizes by default in ``mode`` (dynamic or static QDQ)."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

    return set(IntegerOpsRegistry) if mode == "dynamic" else set(QLinearOpsRegistry) | set(QDQRegistry)


def quantized_candidates(
    space: Space, graphs: list[str], graph_ops: dict[str, set[str]] | None = None
) -> list[Candidate]:
    """The product of the space's dimensions over the graphs that exist, without duplicates: with
    ``graph_ops`` (op types per graph), two op-type choices that quantize the same ops of the graph
    (``null`` and ``[Conv]`` on a Conv-only network) are one candidate (the first listed), and so are
    smoothed and plain candidates of a graph with nothing to smooth."""
    out: list[Candidate] = []
    seen: set[Any] = set()
    from pipeline.quantization.smooth import SMOOTHABLE

    for graph, mode, pc, method, ops, alpha in product(
        graphs, space.modes, space.per_channel, space.calibration_methods, space.op_types, space.smoothing
    ):
        cand = Candidate(
            graph=graph,
            mode=mode,
            per_channel=pc,
            method=method if mode == "static" else None,
            op_types=tuple(ops) if ops else None,
            smoothing=alpha,
        )
        key: Any = cand.name
        if graph_ops is not None and graph in graph_ops:
            effective = (set(ops) if ops else quantizable_ops(mode)) & graph_ops[graph]
            if not effective & set(SMOOTHABLE):  # nothing to smooth: the plain candidate, whatever is listed first
                cand = replace(cand, smoothing=None)
            key = (graph, mode, pc, cand.method, frozenset(effective), cand.smoothing)
        if key not in seen:
            seen.add(key)
            out.append(cand)
    return out


def plan(space: Space, available_graphs: list[str], graph_ops: dict[str, set[str]] | None = None) -> Plan:
    """Every candidate over the graph variants that exist (``passes`` always does); ``graph_ops``
    (op types per graph) drops candidates that would quantize exactly the same ops as an earlier one."""
    graphs = [g for g in space.graphs if g in available_graphs]
    if "passes" not in graphs:
        graphs.insert(0, "passes")
    return Plan(graphs=graphs, candidates=[*float_candidates(graphs), *quantized_candidates(space, graphs, graph_ops)])
