"""``onnxbuild``: the command line around the recipes.

    onnxbuild compose [OVERRIDE...]           conf/ -> validated params.yaml (then: dvc repro)
    onnxbuild check                           the whole project: every recipe and model composes, every _target_
                                              imports, every path exists, params.yaml is fresh; every error listed
    onnxbuild list                            config groups, their options, and the declared builds
    onnxbuild promote JOB_DIR --name NAME     a sweep point -> conf/recipe/NAME.yaml, registered as a build
    onnxbuild verdicts                        every build's verdict; exits 1 naming builds that failed gates or crashed
    onnxbuild new model NAME --framework F    a commented conf/model/NAME.yaml, registered in conf/config.yaml
    onnxbuild new recipe NAME --model M       a commented conf/recipe/NAME.yaml, registered as a build

Every command runs with the project root (the folder holding conf/) first on the import path, so your own
packages there (``mymodels/...``, ``_target_: mymodels.net.build``) import without PYTHONPATH.

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
    from pipeline.project_check import check_project

    report = check_project(args.conf, args.params, args.dvc_yaml, logging.getLogger("onnxbuild.check"))
    for line in report.errors:
        print(f"error: {line}", file=sys.stderr)
    for line in report.notes:
        print(f"note: {line}")
    c = report.counts
    builds = f"{c['builds']} declared builds" if "builds" in c else "builds unknown: the project did not compose"
    what = (f"{c.get('models', 0)} model files, {c.get('recipes', 0)} recipes, {builds}, "
            f"{c.get('targets', 0)} _target_ modules")
    if report.errors:
        print(f"onnxbuild check: {len(report.errors)} error(s) in {args.conf}/ ({what})", file=sys.stderr)
        return 1
    print(f"onnxbuild check: ok ({what})")
    return 0


def _new(args: argparse.Namespace, rest: list[str]) -> int:
    from pipeline.scaffold import new_model, new_recipe

    if args.kind == "model":
        done = new_model(args.name, args.framework, path=args.path, conf=args.conf, force=args.force)
    else:
        done = new_recipe(args.name, args.model, quantization=args.quantization, conf=args.conf, force=args.force)
    for line in done["lines"]:
        print(line)
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

    done = promote(args.job_dir, args.name, args.conf, force=args.force, allow_failed=args.allow_failed)
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


def _option(rest: list[str], name: str) -> str | None:
    """The value of ``name`` among the arguments passed through to a subcommand (``compose --conf X``)."""
    for i, arg in enumerate(rest):
        if arg == name and i + 1 < len(rest):
            return rest[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onnxbuild", description=__doc__.split("\n\n")[0].strip(" `"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compose", help="compose conf/ into params.yaml (validated)", add_help=False)
    p.set_defaults(func=_compose)

    p = sub.add_parser("check", help="check the whole project (recipes, models, _target_ imports, paths, params.yaml)")
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
    p.add_argument("--allow-failed", action="store_true", help="promote a point that failed or missed a gate")
    p.set_defaults(func=_promote)

    p = sub.add_parser("verdicts", help="every build's verdict; exit 1 when a build failed its gates or crashed")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--metrics-dir", default="metrics/builds")
    p.add_argument("--logs", default="logs")
    p.set_defaults(func=_verdicts)

    from pipeline.package.command import configure as configure_package  # onnxbuild package BUILD [--out DIR]

    configure_package(sub.add_parser("package", help="a deployment package of one build (model, session settings, infer.py)"))

    from pipeline.scaffold import FRAMEWORKS

    p = sub.add_parser("new", help="scaffold a model file or a recipe and register it in conf/config.yaml")
    new = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    m = new.add_parser("model", help="conf/model/NAME.yaml for a torch / keras / onnx / transformers model")
    m.add_argument("name", help="the model's name (and file name)")
    m.add_argument("--framework", required=True, choices=FRAMEWORKS)
    m.add_argument("--path", default=None,
                   help="onnx: the .onnx file; transformers: the model folder or pkg://package/folder; "
                   "keras: a .keras file (else a factory is scaffolded)")
    r = new.add_parser("recipe", help="conf/recipe/NAME.yaml: a build of a model")
    r.add_argument("name", help="the build's name (and recipe file name)")
    r.add_argument("--model", required=True, help="a model declared in conf/config.yaml")
    r.add_argument("--quantization", default="none", help="an option of conf/quantization/ (default: none)")
    for q in (m, r):
        q.add_argument("--conf", default="conf")
        q.add_argument("--force", action="store_true", help="replace an existing file of that name")
        q.set_defaults(func=_new)

    args, rest = parser.parse_known_args(argv)
    if args.command != "compose" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from pipeline.project import use_project

    conf = getattr(args, "conf", None) or _option(rest, "--conf") or "conf"
    use_project(conf_dir=conf)  # the user's own packages import the same way in every command
    try:
        return args.func(args, rest)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
