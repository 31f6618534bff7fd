"""Stage ``passes@BUILD``: run the build's ordered graph passes on the exported model.

    python -m pipeline.stages.passes --build B --export artifacts/models/M/export --out artifacts/builds/B/passes

writes ``out/model.onnx`` (+ external data) and ``out/passes.json`` (one record per pass and totals).
No torch or TensorFlow here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import StageError
from pipeline.fsutil import atomic_dir, write_artifact_json
from pipeline.onnx_utils import model_path, model_size_mb

STAGE = "passes"


def run_passes(build, model_spec, export_dir: str | Path, out_dir: str | Path, log: logging.Logger) -> dict[str, Any]:
    """Run ``build.passes`` on ``export_dir/model.onnx``; write ``out_dir`` atomically; return passes.json."""
    from pipeline.passes import PassContext, run_pass_list
    from pipeline.schema import pass_params

    src = model_path(export_dir)
    if not src.exists():
        raise StageError(STAGE, "input", f"no model at {src}: run the export stage first")
    entries = [(p.name, pass_params(p, key=f"passes[{i}]")) for i, p in enumerate(build.passes)]
    dims = dict(model_spec.export.dims) if model_spec is not None else {"batch": 1}
    with atomic_dir(out_dir) as tmp:
        ctx = PassContext(log=log, work_dir=tmp, dims=dims)
        result = run_pass_list(src, model_path(tmp), entries, ctx)
        result["input"] = str(src)
        result["totals"]["size_mb_before"] = round(model_size_mb(src), 6)
        result["totals"]["size_mb_after"] = round(model_size_mb(model_path(tmp)), 6)
        write_artifact_json(Path(tmp) / "passes.json", result)
    totals = result["totals"]
    log.info(
        "%d pass(es), %d changed the model: %d -> %d nodes",
        totals["num_passes"], totals["num_changed"], totals["nodes_before"], totals["nodes_after"],
    )
    return result


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build", required=True, help="build name in params.yaml")
    parser.add_argument("--export", required=True, help="the model's export folder (holds model.onnx)")
    parser.add_argument("--out", required=True, help="output folder (model.onnx, passes.json)")


def _body(args: argparse.Namespace, log: logging.Logger) -> None:
    from pipeline.stages.runner import build_spec, load_params

    build, spec = build_spec(load_params(args.params), args.build, source=args.params)
    run_passes(build, spec, Path(args.export), Path(args.out), log)


def main(argv: list[str] | None = None) -> int:
    from pipeline.stages.runner import main_for

    return main_for(STAGE, _configure, _body, item_arg="build", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
