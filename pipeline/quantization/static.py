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
from pipeline.schema import Factory, Strict

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
QDQ_PER_CHANNEL_MIN_OPSET = 13  # DequantizeLinear's axis attribute
MIN_OPSET = 11


class Calibration(Strict):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    num_samples: int = Field(128, ge=1)
    percentile: float = Field(99.999, gt=0.0, le=100.0)  # percentile method only
    dataset: Factory | None = None  # None: the model's calibration factory, else random input samples
    seed: int = 0
    # The most memory calibration may hold (its inputs, ONNX Runtime's working memory and the collected
    # outputs); None: min(2 GB, half the available RAM). Samples are fed in chunks that fit it
    # (pipeline/quantization/bounded.py); the resulting ranges do not depend on it.
    memory_budget_gb: float | None = Field(None, gt=0.0)


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

        @model_validator(mode="after")
        def _supported_pair(self) -> StaticInt8.Params:
            if self.activation_type == "int8" and self.weight_type == "uint8":
                raise ValueError(
                    "activation_type int8 with weight_type uint8 is not supported by ONNX Runtime "
                    "(use uint8/int8, uint8/uint8 or int8/int8)"
                )
            return self

    def run(self, src: Path, dst: Path, params: Params, ctx: QuantContext) -> dict[str, Any]:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.calibrate import save_tensors_data
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        from pipeline.hardware import cpu_info
        from pipeline.quantization.bounded import budget_bytes, collect_ranges, estimate_activations, plan
        from pipeline.quantization.calibration import batches, calibration_samples, first_sample
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
        arrays, origin = calibration_samples(model_in, cal.dataset, cal.num_samples, cal.seed, ctx)
        default_ops = set(QLinearOpsRegistry) | set(QDQRegistry) if qdq else set(QLinearOpsRegistry)
        ops = op_types_to_quantize(params.op_types_to_quantize, params.op_types_to_exclude, default_ops)
        extra: dict[str, Any] = {}
        if cal.method == "percentile":
            extra["CalibPercentile"] = cal.percentile
        qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        external = uses_external_data(model_in)
        t0 = time.perf_counter()

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
        options = {"percentile": cal.percentile} if cal.method == "percentile" else {}
        ranges = collect_ranges(model_in, chunks, cal.method, calibrated_ops, options, external, ctx.work_dir)
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
            nodes_to_exclude=list(params.nodes_to_exclude),
            use_external_data_format=external,
            calibrate_method=getattr(CalibrationMethod, METHODS[cal.method]),
            extra_options=extra,
            calibration_cache_path=str(cache),
        )
        cache.unlink()
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
                "calibration_samples": count,
                "calibration_source": origin,
                "calibration_memory": chosen.info(estimate),
                "op_types_to_quantize": ops,
                "nodes_to_exclude": list(params.nodes_to_exclude),
                "external_data": external,
                "quantize_seconds": round(time.perf_counter() - t0, 4),
            }
        )
        if cal.method == "percentile":
            info["calibration_percentile"] = cal.percentile
        return info
