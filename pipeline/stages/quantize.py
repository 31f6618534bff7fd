"""Stage ``quantize@BUILD``: quantize the passes' output into the build's final artifact.

    python -m pipeline.stages.quantize --build B --input artifacts/builds/B/passes --out artifacts/builds/B/model \
        [--export artifacts/models/M/export]   # needed by quantization: auto (the search)

writes ``out/model.onnx`` (+ external data) and ``out/quantization.json`` (quantizer, resolved params,
nodes before/after, op histogram, calibration sample count; timings are logged, not written, so the
artifact folder is a function of the recipe). No torch or TensorFlow here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, StageError, one_line
from pipeline.fsutil import atomic_dir, write_artifact_json
from pipeline.onnx_utils import file_stats, model_path, model_size_mb

STAGE = "quantize"


def quantize_build(
    build,
    model_spec,
    input_dir: str | Path,
    out_dir: str | Path,
    log: logging.Logger,
    *,
    build_name: str | None = None,
    source: str | None = None,
    export_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Quantize ``input_dir/model.onnx`` with ``build.quantization``; write ``out_dir`` atomically."""
    from pipeline.quantization import QUANTIZERS, QuantContext

    src = model_path(input_dir)
    if not src.exists():
        raise StageError(STAGE, "input", f"no model at {src}: run the passes stage first")
    name, params = build.quantization.name, build.quantization.params
    key = f"builds.{build_name}.quantization" if build_name else "quantization"
    impl = QUANTIZERS.get_or_raise(name, key=f"{key}.name", source=source)()
    try:
        before = file_stats(src)
    except Exception as exc:
        raise StageError(STAGE, "input", f"cannot read {src}: {one_line(exc)}") from exc
    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory(prefix="onnxbuild-quantize-") as work:
        ctx = QuantContext(
            model_spec=model_spec, log=log, work_dir=Path(work), key=key,
            model_key=f"models.{build.model}", source=source,
            build=build, build_name=build_name, export_dir=Path(export_dir) if export_dir is not None else None,
        )
        dst = model_path(tmp)
        log.info("quantizer %s on %s (%d nodes)", name, src, before["num_nodes"])
        t0 = time.perf_counter()
        try:
            info = impl.run(src, dst, params, ctx) or {}
        except PipelineError:
            raise
        except Exception as exc:
            log.debug("quantizer %s failed", name, exc_info=True)
            raise StageError(STAGE, name, one_line(exc)) from exc
        seconds = time.perf_counter() - t0
        after = file_stats(dst)
        result = {
            "quantizer": name,
            "params": params.model_dump(mode="json", by_alias=True),
            "input": str(src),
            "nodes_before": before["num_nodes"],
            "nodes_after": after["num_nodes"],
            "ops_before": before["ops"],
            "ops": after["ops"],
            "opsets": after["opsets"],
            "calibration_samples": int(info.get("calibration_samples", 0)),
            **quantized_nodes(src, dst, name, log, float_on_purpose=bool(info.get("float_chosen"))),
            "size_mb_before": round(model_size_mb(src), 6),
            "size_mb_after": round(model_size_mb(dst), 6),
            "seconds": round(seconds, 4),
            "info": info,
        }
        write_artifact_json(Path(tmp) / "quantization.json", result)
    log.info(
        "%s: %d -> %d nodes, %.3f -> %.3f MB (%.1fs)",
        name, result["nodes_before"], result["nodes_after"], result["size_mb_before"], result["size_mb_after"], seconds,
    )
    return result


def quantized_nodes(
    src: Path, dst: Path, quantizer: str, log: logging.Logger, float_on_purpose: bool = False
) -> dict[str, int]:
    """``quantized_nodes`` / ``quantized_in_subgraphs``: quantization nodes the quantizer added (the
    artifact's count minus its input's, subgraphs included). A quantizer that added none logs a
    warning saying so plainly."""
    from pipeline.onnx_utils import load_model
    from pipeline.quantization.base import count_quantized_nodes
    from pipeline.quantization.subgraphs import has_subgraphs

    before = count_quantized_nodes(load_model(src, load_external_data=False))
    artifact = load_model(dst, load_external_data=False)
    after = count_quantized_nodes(artifact)
    counts = {
        "quantized_nodes": after.total - before.total,
        "quantized_in_subgraphs": after.in_subgraphs - before.in_subgraphs,
    }
    if float_on_purpose:  # a search that chose the float model says why in its own log lines
        log.info("the search shipped a float model: no quantization node added")
    elif quantizer != "none" and counts["quantized_nodes"] <= 0:
        why = (
            "no node in the main graph or its If/Loop subgraphs was quantized; static quantization leaves "
            "subgraphs alone, dynamic_int8 quantizes them"
            if has_subgraphs(artifact) else "no node of a quantizable op type was quantized"
        )
        log.warning("nothing was quantized: quantizer %s added no quantization node (%s); the artifact "
                    "computes in float like its input", quantizer, why)
    return counts


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build", required=True, help="build name in params.yaml")
    parser.add_argument("--input", required=True, help="the build's passes folder (holds model.onnx)")
    parser.add_argument("--out", required=True, help="output folder (model.onnx, quantization.json)")
    parser.add_argument(
        "--export",
        help="the model's export folder (model.onnx, reference.npz): needed by quantization 'auto', "
        "which measures its candidates against the fp32 export",
    )


def _body(args: argparse.Namespace, log: logging.Logger) -> None:
    from pipeline.stages.runner import build_spec, load_params

    build, spec = build_spec(load_params(args.params), args.build, source=args.params)
    quantize_build(
        build, spec, Path(args.input), Path(args.out), log,
        build_name=args.build, source=args.params, export_dir=args.export,
    )


def main(argv: list[str] | None = None) -> int:
    from pipeline.stages.runner import main_for

    return main_for(STAGE, _configure, _body, item_arg="build", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
