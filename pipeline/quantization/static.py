"""Static int8 quantization (QDQ or QOperator) calibrated on a dataset or generated samples.

"auto" types follow the target ISA (ONNX Runtime's guidance, and measurements in FIELD-NOTES):
on x86 uint8 activations with int8 weights (U8S8), ``reduce_range`` only on CPUs without VNNI;
elsewhere (ARM) int8 activations and weights (S8S8). The resolved choices go into the info.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.passes.base import uses_external_data
from pipeline.quantization.base import QuantContext, Quantizer, check_exclusions, check_loads, op_types_to_quantize
from pipeline.quantization.smooth import Smoothing
from pipeline.schema import MAX_SAMPLES, Factory, Strict

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
QDQ_PER_CHANNEL_MIN_OPSET = 13  # DequantizeLinear's axis attribute
MIN_OPSET = 11


class Calibration(Strict):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    num_samples: int = Field(128, ge=1, le=MAX_SAMPLES)
    percentile: float = Field(99.999, gt=0.0, le=100.0)  # percentile method only
    # histogram bins of the entropy and percentile methods. ONNX Runtime's entropy default (128, equal
    # to its 128 quantized bins) leaves the KL search a single candidate, the whole range: entropy
    # calibration then returns exactly the MinMax ranges (measured on the PP-OCRv4 detector)
    num_bins: int = Field(2048, ge=256, le=65536)
    dataset: Factory | None = None  # None: the model's calibration factory, else random input samples
    seed: int = 0
    # The most memory calibration may hold (its inputs, ONNX Runtime's working memory and the collected
    # outputs); None: min(2 GB, half the available RAM). Samples are fed in chunks that fit it
    # (pipeline/quantization/bounded.py); the resulting ranges do not depend on it.
    memory_budget_gb: float | None = Field(None, gt=0.0)


def calibrator_options(cal: Calibration) -> dict[str, Any]:
    """ONNX Runtime ``create_calibrator`` extra options for ``cal``: the histogram methods' bins (and
    the percentile)."""
    options: dict[str, Any] = {"num_bins": cal.num_bins} if cal.method in ("entropy", "percentile") else {}
    if cal.method == "percentile":
        options["percentile"] = cal.percentile
    return options


def resolve_types(activation: str, weight: str, reduce_range: str | bool, cpu: dict[str, Any]) -> dict[str, Any]:
    """Resolve "auto" activation / weight types and reduce_range for the CPU described by ``cpu``."""
    x86 = cpu["arch"].lower() in ("x86_64", "amd64", "i386", "i686")
    vnni = bool(cpu["isa"].get("vnni"))
    act = activation if activation != "auto" else ("uint8" if x86 else "int8")
    wt = weight if weight != "auto" else "int8"
    if act == "int8" and wt == "uint8":  # ONNX Runtime has no S8U8 kernels
        act = "uint8"
    rr = reduce_range if reduce_range != "auto" else (x86 and not vnni)
    basis = f"{'x86' if x86 else cpu['arch']} {'with' if vnni else 'without'} VNNI ({cpu['model']})"
    return {"activation_type": act, "weight_type": wt, "reduce_range": bool(rr), "basis": basis}


class StaticInt8(Quantizer):
    name = "static_int8"

    class Params(Strict):
        name: Literal["static_int8"] = "static_int8"
        format: Literal["qdq", "qoperator"] = "qdq"
        per_channel: bool = True
        reduce_range: Literal["auto"] | bool = "auto"
        activation_type: Literal["auto", "uint8", "int8"] = "auto"
        weight_type: Literal["auto", "int8", "uint8"] = "auto"
        calibration: Calibration = Field(default_factory=Calibration)
        op_types_to_quantize: list[str] | None = None  # None: every op type ONNX Runtime can quantize
        op_types_to_exclude: list[str] = Field(default_factory=list)
        nodes_to_exclude: list[str] = Field(default_factory=list)
        preprocess: bool = True  # onnxruntime's quant_pre_process first (recommended)
        smoothing: Smoothing | None = None  # SmoothQuant first (pipeline/quantization/smooth.py)

        @model_validator(mode="after")
        def _supported_pair(self) -> StaticInt8.Params:
            if self.activation_type == "int8" and self.weight_type == "uint8":
                raise ValueError(
                    "activation_type int8 with weight_type uint8 is not supported by ONNX Runtime "
                    "(use uint8/int8, uint8/uint8 or int8/int8)"
                )
            return self

    def run(self, src: Path, dst: Path, params: Params, ctx: QuantContext, ranges: Any = None) -> dict[str, Any]:
        """``ranges``: tensor ranges from :meth:`calibrate` on the same graph and calibration settings
        (the search re-quantizes one graph with different exclusions without recalibrating)."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.calibrate import save_tensors_data
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        from pipeline.hardware import cpu_info
        from pipeline.quantization.preprocess import prepare

        check_exclusions(
            src,
            params.nodes_to_exclude,
            {"op_types_to_quantize": params.op_types_to_quantize, "op_types_to_exclude": params.op_types_to_exclude},
            ctx,
        )
        qdq = params.format == "qdq"
        min_opset = QDQ_PER_CHANNEL_MIN_OPSET if qdq and params.per_channel else MIN_OPSET
        model_in, info = prepare(src, ctx.work_dir, min_opset=min_opset, run_preprocess=params.preprocess, log=ctx.log)

        cpu = cpu_info()
        types = resolve_types(params.activation_type, params.weight_type, params.reduce_range, cpu)
        ctx.log.info(
            "static int8 %s: activations %s, weights %s, reduce_range %s, per_channel %s (%s)",
            params.format, types["activation_type"], types["weight_type"], types["reduce_range"],
            params.per_channel, types["basis"],
        )
        cal = params.calibration
        default_ops = set(QLinearOpsRegistry) | set(QDQRegistry) if qdq else set(QLinearOpsRegistry)
        ops = op_types_to_quantize(params.op_types_to_quantize, params.op_types_to_exclude, default_ops)
        info["smoothing"] = None
        if params.smoothing is not None:
            if ranges is not None:
                raise ValueError("ranges calibrated elsewhere cannot be reused with smoothing (they belong to another graph)")
            from pipeline.quantization.smooth import apply

            model_in, info["smoothing"] = apply(
                model_in, params.smoothing, ctx, ops or default_ops, params.nodes_to_exclude
            )
        # smoothing's Muls (smoothed here, or in the search before this graph came in) stay in float
        from pipeline.quantization.smooth import smoothing_muls

        exclude = [*params.nodes_to_exclude, *(n for n in smoothing_muls(model_in) if n not in params.nodes_to_exclude)]
        extra: dict[str, Any] = {}
        if cal.method == "percentile":
            extra["CalibPercentile"] = cal.percentile
        qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        external = uses_external_data(model_in)
        t0 = time.perf_counter()
        if ranges is None:
            ranges, cal_info = self.calibrate(model_in, params, ctx)
        else:
            cal_info = {"calibration_reused": True}
        cache = ctx.work_dir / "calibration_ranges.json"
        save_tensors_data(ranges, cache)
        quantize_static(
            str(model_in),
            str(dst),
            None,
            quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
            op_types_to_quantize=ops,
            per_channel=params.per_channel,
            reduce_range=types["reduce_range"],
            activation_type=qtype[types["activation_type"]],
            weight_type=qtype[types["weight_type"]],
            nodes_to_exclude=exclude,
            use_external_data_format=external,
            calibrate_method=getattr(CalibrationMethod, METHODS[cal.method]),
            extra_options=extra,
            calibration_cache_path=str(cache),
        )
        cache.unlink()
        if qdq and exclude:
            keep_excluded_in_float(dst, exclude, model_in)
        check_loads(dst)
        info.update(
            {
                "format": params.format,
                "per_channel": params.per_channel,
                "activation_type": types["activation_type"],
                "weight_type": types["weight_type"],
                "reduce_range": types["reduce_range"],
                "isa_basis": types["basis"],
                "calibration_method": cal.method,
                **cal_info,
                "op_types_to_quantize": ops,
                "nodes_to_exclude": list(params.nodes_to_exclude),
                "external_data": external,
                "quantize_seconds": round(time.perf_counter() - t0, 4),
            }
        )
        if cal.method == "percentile":
            info["calibration_percentile"] = cal.percentile
        if cal.method in ("entropy", "percentile"):
            info["calibration_num_bins"] = cal.num_bins
        return info

    def calibrate(self, model_in: Path, params: Params, ctx: QuantContext) -> tuple[Any, dict[str, Any]]:
        """Tensor ranges (onnxruntime ``TensorsData``) of ``model_in`` on the calibration data, fed in
        chunks that fit the memory budget, and the calibration info."""
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        from pipeline.quantization.bounded import budget_bytes, collect_ranges, estimate_activations, plan
        from pipeline.quantization.calibration import batches, calibration_samples, first_sample

        cal = params.calibration
        qdq = params.format == "qdq"
        arrays, origin = calibration_samples(model_in, cal.dataset, cal.num_samples, cal.seed, ctx)
        default_ops = set(QLinearOpsRegistry) | set(QDQRegistry) if qdq else set(QLinearOpsRegistry)
        ops = op_types_to_quantize(params.op_types_to_quantize, params.op_types_to_exclude, default_ops)
        # calibration in chunks that fit the memory budget, planned before anything runs
        budget, budget_source = budget_bytes(cal.memory_budget_gb)
        estimate = estimate_activations(model_in, first_sample(model_in, arrays, ctx.model_spec), ctx.log)
        inputs = sum(int(v.nbytes) for v in arrays.values())
        available = len(next(iter(arrays.values())))
        where = (f"{ctx.key}.calibration", ctx.source)
        chosen = plan(cal.method, estimate, inputs, available, budget, budget_source, *where)
        feeds = batches(model_in, arrays, max_batch=chosen.batch, model_spec=ctx.model_spec)
        per_feed = max(len(next(iter(f.values()))) for f in feeds)
        if per_feed != chosen.batch:  # the model fixes its batch dim
            chosen = plan(cal.method, estimate, inputs, available, budget, budget_source, *where, fixed_batch=per_feed)
        count = sum(len(next(iter(f.values()))) for f in feeds)
        step = max(1, chosen.chunk // per_feed)
        chunks = [feeds[i : i + step] for i in range(0, len(feeds), step)]
        ctx.log.info(
            "calibration: %s on %d samples in %d chunk(s) of %d, batch %d; %.1f MB of activations per sample "
            "(%s); planned peak %.2f GB of a %.2f GB budget (%s)",
            cal.method, count, len(chunks), chosen.chunk, chosen.batch, estimate.per_sample / 2**20,
            estimate.source, chosen.need / 2**30, budget / 2**30, budget_source,
        )
        # quantize_static's own calibrator defaults: every quantizable op type, percentile option by name
        calibrated_ops = ops if ops is not None else sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
        ranges = collect_ranges(
            model_in, chunks, cal.method, calibrated_ops, calibrator_options(cal), uses_external_data(model_in),
            ctx.work_dir,
        )
        info = {"calibration_samples": count, "calibration_source": origin, "calibration_memory": chosen.info(estimate)}
        return ranges, info


def keep_excluded_in_float(path: Path, nodes: list[str], float_path: Path) -> int:
    """Make the excluded nodes of a QDQ model compute on float inputs; returns how many inputs were rewired.

    ONNX Runtime's QDQ quantizer puts one Q/DQ pair on a tensor that any quantized node reads (or
    writes) and rewires EVERY consumer to the DequantizeLinear output, excluded nodes included: an
    excluded node keeps float weights but still reads int8-rounded activations, so keeping nodes
    in float barely changes (or worsens) fidelity. Here each excluded node reads the tensor before
    its QuantizeLinear again, and Q/DQ pairs nobody reads any more are dropped; with every node
    excluded the graph is the float graph. The quantizer also removes a Clip/Relu after a quantized
    node (the QuantizeLinear's range clips instead, and the producer takes the activation's output
    name): an excluded reader of such a tensor gets a float copy of the removed activation
    (``float_path``: the float model that was quantized)."""
    import onnx
    from onnx import helper

    from pipeline.passes.base import save_like

    model = onnx.load(str(path))
    graph = model.graph
    float_graph = onnx.load(str(float_path), load_external_data=False).graph
    float_producer = {o: n for n in float_graph.node for o in n.output}
    float_inits = {i.name: i for i in float_graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name for i in graph.initializer}
    excluded = set(nodes)
    restored: dict[str, str] = {}  # tensor -> the float activation's output that replaces it

    def float_tensor(name: str) -> str | None:
        """The float value of ``name`` (a QuantizeLinear's input) in this graph, or None."""
        fp, qp = float_producer.get(name), producer.get(name)
        if fp is None or (qp is not None and qp.name == fp.name):
            return name  # a graph input, or produced by the same node as in the float model
        if name in restored:
            return restored[name]
        if fp.op_type not in ("Clip", "Relu") or qp is None:
            return None
        copy = helper.make_node(fp.op_type, [name, *fp.input[1:]], [f"{name}_float"], name=f"{fp.name}_float")
        copy.attribute.extend(fp.attribute)
        for extra in fp.input[1:]:
            if extra and extra not in inits:
                if extra not in float_inits:
                    return None
                graph.initializer.append(float_inits[extra])
                inits.add(extra)
        graph.node.append(copy)
        restored[name] = copy.output[0]
        return restored[name]

    rewired = 0
    for node in list(graph.node):
        if node.name not in excluded:
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
                continue  # a pre-quantized weight, or a weight's own DQ: not an activation pair
            value = float_tensor(q.input[0])
            if value is not None:
                node.input[k] = value
                rewired += 1
    if not rewired:
        return 0
    if restored:  # the copies were appended: put the graph back in topological order
        _sort_topologically(graph)
    outputs = {o.name for o in graph.output}
    freed: set[str] = set()
    while True:  # drop Q/DQ nodes whose outputs nobody reads
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not set(n.output) & read]
        if not dead:
            break
        for n in dead:
            freed.update(n.input)
            graph.node.remove(n)
    read = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name in freed and i.name not in read]:  # their scales, zero points
        graph.initializer.remove(init)
    save_like(model, path, path)
    return rewired


def _sort_topologically(graph: Any) -> None:
    """Reorder the main graph's nodes so every node follows the producers of its inputs."""
    produced = {o for n in graph.node for o in n.output if o}
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            # inputs produced by no node are outer-scope or optional: available from the start
            if all(i in ready or i not in produced for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle through {[n.name for n in rest][:3]}")
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)
