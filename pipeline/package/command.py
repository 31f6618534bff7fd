"""The ``onnxbuild package`` subcommand (registered in :mod:`pipeline.cli`)."""

from __future__ import annotations

import argparse
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("build", help="a build of params.yaml (built and evaluated: `dvc repro evaluate@BUILD`)")
    parser.add_argument("--out", default=None, help="folder to write BUILD/ and BUILD.zip into (default: packages)")
    parser.add_argument("--force", action="store_true", help="replace an existing package of that build")
    parser.add_argument("--allow-failed", action="store_true",
                        help="package a build that was not built, crashed, failed its gates or is out of date "
                        "(the reason is recorded in its package.json and README.md)")
    parser.add_argument("--params", default="params.yaml", help="the composed project (default: params.yaml)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, rest: Any = None) -> int:
    from pipeline.package import package_build
    from pipeline.project import use_project

    root = use_project(".")
    done = package_build(args.build, root=root, out=args.out, force=args.force, allow_failed=args.allow_failed,
                         params_file=args.params)
    print(f"wrote {done.folder} ({len(done.files)} files) and {done.zip}")
    if done.warning:
        print(f"note: build '{args.build}' {done.warning}")
    if done.overridden:
        print(f"warning: packaged although build '{args.build}' {done.overridden}")
    print(f"run it: python {done.folder / 'infer.py'}")
    return 0


__all__ = ["configure", "run"]
