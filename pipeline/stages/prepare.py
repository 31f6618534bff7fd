"""Stage ``prepare@MODEL``: train the model (if its recipe declares ``train``) or snapshot its source.

    python -m pipeline.stages.prepare --model M --out artifacts/models/M/source --metrics metrics/models/M.json

Writes the source artifact directory atomically (torch: ``model.pt``) and the training metrics JSON
(``{trained: false}`` when nothing was trained) without wall-clock fields: those (``seconds``) go
to ``logs/prepare/<model>.timings.json``, so retraining to the same model leaves dvc.lock unchanged.
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

STAGE = "prepare"


def prepare_model(
    spec, out_dir: str | Path, log: logging.Logger, name: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """Prepare one validated ModelSpec into ``out_dir``; returns its metrics. With ``name``,
    ConfigErrors name ``models.<name>.<key>`` (in ``source``)."""
    from pipeline.sources import source_module
    from pipeline.sources.common import qualify_config_error

    try:
        module = source_module(spec.framework)
        metrics = module.prepare(spec, Path(out_dir), log)
    except ConfigError as exc:
        if name is None:
            raise
        raise qualify_config_error(exc, name, source) from exc
    return {"framework": spec.framework, **metrics}


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model name (a key of models: in params.yaml)")
    parser.add_argument("--out", required=True, help="source artifact directory to write")
    parser.add_argument("--metrics", required=True, help="training metrics JSON to write")


def _body(args: argparse.Namespace, log: logging.Logger) -> None:
    from pipeline.fsutil import without_timings, write_json

    params = load_params(args.params)
    spec = model_spec(params, args.model, args.params)
    metrics = prepare_model(spec, args.out, log, name=args.model, source=args.params)
    # The metrics file is a DVC output (its hash is in dvc.lock): wall-clock fields would change the
    # lock on every retrain of a byte-identical model. They go to an unversioned file beside the log.
    record = {"model": args.model, **metrics}
    write_json(args.metrics, without_timings(record))
    if record != without_timings(record):
        # timings are measured on this machine: they say which (the metrics file stays machine-independent)
        from pipeline.evaluate.environment import host

        write_json(timings_file(args.model), {**record, "host": host()["id"]})
    log.info("prepared %s -> %s", args.model, args.out)


def timings_file(model: str) -> Path:
    """``logs/prepare/<model>.timings.json``: the training metrics with their timings (not versioned)."""
    from pipeline.stages.runner import LOG_ROOT

    return LOG_ROOT / STAGE / f"{model}.timings.json"


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(STAGE, _configure, _body, item_arg="model", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
