"""``onnxbuild``: the command line around the recipes.

    onnxbuild compose [OVERRIDE...]           conf/ -> validated params.yaml (then: dvc repro)
    onnxbuild check                           is params.yaml stale w.r.t. conf/? (what the `params` stage runs)
    onnxbuild list                            config groups, their options, and the declared builds
    onnxbuild promote JOB_DIR --name NAME     a sweep point -> conf/recipe/NAME.yaml, registered as a build
    onnxbuild verdicts                        every build's verdict; exits 1 naming builds that failed gates or crashed

Building is DVC's job (`dvc repro`, `dvc exp run`); sweeping is Hydra's (`python -m pipeline.sweep -m ...`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PipelineError


def _compose(args: argparse.Namespace, rest: list[str]) -> int:
    from pipeline.compose import main as compose_main

    return compose_main(rest)


def _check(args: argparse.Namespace, rest: list[str]) -> int:
    from pipeline.stages.check import check

    log = logging.getLogger("onnxbuild.check")
    why = check(Path(args.conf), Path(args.params), Path(args.dvc_yaml), log)
    print(f"{args.params} is fresh: {why}")
    return 0


def _list(args: argparse.Namespace, rest: list[str]) -> int:
    from pipeline.compose import compose, config_groups, group_options

    conf = Path(args.conf)
    print(f"config groups in {conf}/ (option names for overrides):")
    for group in config_groups(conf):
        print(f"  {group + '/':<14} {', '.join(group_options(conf, group))}")
    comp = compose([], conf)
    print("\ndeclared in conf/config.yaml:")
    for name, model in (comp.data.get("models") or {}).items():
        print(f"  model  {name:<24} {comp.source_of('models.' + name)} ({model.get('framework')})")
    for name, build in (comp.data.get("builds") or {}).items():
        q = (build.get("quantization") or {}).get("name")
        print(f"  build  {name:<24} {comp.source_of('builds.' + name)} (model {build.get('model')}, {q})")
    return 0


def _promote(args: argparse.Namespace, rest: list[str]) -> int:
    from pipeline.promote import promote

    done = promote(args.job_dir, args.name, args.conf, force=args.force)
    print(f"wrote {done['recipe']} and registered it in {done['config']} (model {done['model']})")
    for note in done["notes"]:
        print(f"note: {note}")
    print(f"next: {done['next']}")
    return 0


def _verdicts(args: argparse.Namespace, rest: list[str]) -> int:
    from pipeline.report.check import check_verdicts

    lines, bad = check_verdicts(args.params, args.metrics_dir, args.logs)
    for line in lines:
        print(line)
    if bad:
        print(f"error: {len(bad)} build(s) must not ship:", file=sys.stderr)
        for line in bad:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onnxbuild", description=__doc__.split("\n\n")[0].strip(" `"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compose", help="compose conf/ into params.yaml (validated)", add_help=False)
    p.set_defaults(func=_compose)

    p = sub.add_parser("check", help="fail when params.yaml is stale w.r.t. conf/")
    p.add_argument("--conf", default="conf")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--dvc-yaml", default="dvc.yaml")
    p.set_defaults(func=_check)

    p = sub.add_parser("list", help="config groups, options and declared builds")
    p.add_argument("--conf", default="conf")
    p.set_defaults(func=_list)

    p = sub.add_parser("promote", help="turn a sweep point into a DVC build")
    p.add_argument("job_dir", help="a sweep job folder, e.g. sweeps/2026-01-31/12-00-00/3")
    p.add_argument("--name", required=True, help="the new build's name (and recipe file name)")
    p.add_argument("--conf", default="conf")
    p.add_argument("--force", action="store_true", help="replace an existing recipe of that name")
    p.set_defaults(func=_promote)

    p = sub.add_parser("verdicts", help="every build's verdict; exit 1 when a build failed its gates or crashed")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--metrics-dir", default="metrics/builds")
    p.add_argument("--logs", default="logs")
    p.set_defaults(func=_verdicts)

    args, rest = parser.parse_known_args(argv)
    if args.command != "compose" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args, rest)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
