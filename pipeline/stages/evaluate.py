"""Stage ``evaluate@BUILD``: measure a build's artifact and write ``metrics/builds/<build>.json``.

    python -m pipeline.stages.evaluate --build B --artifact artifacts/builds/B/model \
        --export artifacts/models/M/export --out metrics/builds/B.json

The metrics file is written (atomically) whether or not the gates pass: a missed gate is the build's
verdict (``fails_gates``, with one line naming each missed gate, its measured value and threshold),
not a crash, so DVC locks the stage and the report stays current. ``onnxbuild verdicts`` (the last
step of ``make build``) exits non-zero naming every build whose gates failed or whose stages crashed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline.fsutil import write_json
from pipeline.stages.runner import build_spec, load_params, main_for


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build", required=True, help="build name (a key of builds: in params.yaml)")
    parser.add_argument("--artifact", required=True, help="directory holding the build's model.onnx")
    parser.add_argument("--export", required=True, help="the model's export directory (model.onnx, reference.npz)")
    parser.add_argument("--out", required=True, help="metrics JSON file to write")
    parser.add_argument(
        "--summary",
        help="optional: also write the headline numbers (p50/p90/p99, speedup, size, cosine_min, top-1, "
        "accuracy drop, gates) as a flat JSON file, for a compact `dvc metrics show`",
    )


def body(args: argparse.Namespace, log: logging.Logger) -> None:
    from pipeline.evaluate.metrics import evaluate_build, headline

    params = load_params(args.params)
    build, model = build_spec(params, args.build, args.params)
    metrics = evaluate_build(build, model, args.artifact, args.export, log, name=args.build)
    write_json(args.out, metrics)
    log.info("wrote %s", args.out)
    log.info("verdict: %s (%s)", metrics["verdict"], metrics["verdict_reason"])
    if args.summary:
        write_json(args.summary, headline(metrics))
    failures = metrics["gates"]["failures"]
    if failures:
        print(f"warning: evaluate stage, gates failed for build {args.build}: {'; '.join(failures)} "
              "(verdict fails_gates; `onnxbuild verdicts` fails on it)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    return main_for("evaluate", configure, body, item_arg="build", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
