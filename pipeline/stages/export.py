"""Stage ``export@MODEL``: turn the prepared source into ``model.onnx`` (+ ``reference.npz``, ``export.json``).

    python -m pipeline.stages.export --model M --source artifacts/models/M/source --out artifacts/models/M/export

ONNX Runtime's outputs are checked against the source framework's (``models.M.export.atol/rtol``);
a mismatch fails the stage with the measured error and leaves any earlier export untouched.
Framework imports happen only inside the source module chosen by ``models.M.framework``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.stages.runner import load_params, main_for, model_spec

STAGE = "export"


def export_model(
    spec,
    source_dir: str | Path,
    out_dir: str | Path,
    log: logging.Logger,
    name: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Export one validated ModelSpec from ``source_dir`` into ``out_dir``; returns the export info.
    With ``name``, ConfigErrors name ``models.<name>.<key>`` (in ``source``)."""
    from pipeline.sources import source_module
    from pipeline.sources.common import qualify_config_error

    try:
        module = source_module(spec.framework)
        return module.export(spec, Path(source_dir), Path(out_dir), log)
    except ConfigError as exc:
        if name is None:
            raise
        raise qualify_config_error(exc, name, source) from exc


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model name (a key of models: in params.yaml)")
    parser.add_argument("--source", required=True, help="source artifact directory written by prepare")
    parser.add_argument("--out", required=True, help="export directory to write (model.onnx, reference.npz, export.json)")


def _body(args: argparse.Namespace, log: logging.Logger) -> None:
    params = load_params(args.params)
    spec = model_spec(params, args.model, args.params)
    info = export_model(spec, args.source, args.out, log, name=args.model, source=args.params)
    log.info(
        "exported %s -> %s (%s, opset %s, max abs err %.3g)",
        args.model, args.out, info.get("exporter"), info.get("opset"),
        info.get("verification", {}).get("max_abs_err", float("nan")),
    )


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(STAGE, _configure, _body, item_arg="model", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
