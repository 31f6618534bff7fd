"""Shared plumbing for stage entry points: argument parsing, params loading, logging, error reporting.

A stage prints one line on failure (``error: <stage> stage, <step> failed: <cause> (full log: ...)``)
and exits 1; the full traceback goes to the log file. Nothing here imports torch or TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, PipelineError, StageError, one_line

LOG_ROOT = Path(os.environ.get("ONNXBUILD_LOG_DIR", "logs"))
DEFAULT_PARAMS = "params.yaml"


def load_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict[str, Any]:
    from pipeline.yamlio import load_yaml_file

    path = Path(path)
    if not path.exists():
        raise ConfigError(
            "not found: compose the recipes first (`onnxbuild compose`)", source=str(path)
        )
    data = load_yaml_file(path) or {}  # a syntax error or duplicate key: FILE:LINE, one line
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", source=str(path))
    return data


def model_spec(params: dict[str, Any], name: str, source: str = DEFAULT_PARAMS):
    """The validated model; its ``_target_``s and files checked against the project's allowlists
    (conf/config.yaml ``project:``), so a hand-edited params.yaml runs nothing compose would refuse."""
    from pipeline.schema import check_name, validate_model
    from pipeline.trust import stage_policy

    models = params.get("models") or {}
    if name not in models:
        raise ConfigError(f"unknown model '{name}'", key="models", source=source, choices=models)
    check_name(name, "models")
    stage_policy().check(models[name], f"models.{name}", source)
    return validate_model(models[name], f"models.{name}", source)


def build_spec(params: dict[str, Any], name: str, source: str = DEFAULT_PARAMS):
    """The validated build and the validated model it refers to. A target whose execution provider
    this onnxruntime lacks fails here, in the first stage of the build (passes), not after quantization."""
    from pipeline.schema import check_name, validate_build
    from pipeline.targets import TARGETS
    from pipeline.trust import stage_policy

    builds = params.get("builds") or {}
    if name not in builds:
        raise ConfigError(f"unknown build '{name}'", key="builds", source=source, choices=builds)
    check_name(name, "builds")
    stage_policy().check(builds[name], f"builds.{name}", source)
    build = validate_build(builds[name], f"builds.{name}", source)
    model = model_spec(params, build.model, source)
    TARGETS[build.target.name]().check_available(build.target.params, f"builds.{name}.target.name", source)
    return build, model


def stage_logger(stage: str, item: str | None) -> tuple[logging.Logger, Path]:
    """A logger writing everything (DEBUG) to logs/<stage>/<item>.log and INFO to stderr."""
    log_file = LOG_ROOT / stage / f"{item or stage}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"onnxbuild.{stage}.{item or ''}")
    logger.setLevel(logging.DEBUG)
    logger.handlers.clear()
    logger.propagate = False
    fh = logging.FileHandler(log_file, mode="w")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    fh.setLevel(logging.DEBUG)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(logging.Formatter(f"[{stage}{'@' + item if item else ''}] %(message)s"))
    sh.setLevel(logging.INFO)
    logger.addHandler(fh)
    logger.addHandler(sh)
    return logger, log_file


def _pin_hash_seed() -> None:
    """Re-run this command with ``PYTHONHASHSEED=0`` when it is not set so.

    Set and dict iteration order over strings depends on the hash seed, and converters such as
    tf2onnx name nodes in that order: the same recipe exported to differently named nodes (and a new
    DVC hash) from one run to the next. A pinned seed makes every stage deterministic whoever calls it
    (`dvc repro`, `dvc exp run`, a shell); the re-exec costs one interpreter start (~40 ms)."""
    if os.environ.get("PYTHONHASHSEED") == "0" or "-m" not in sys.orig_argv:
        return
    os.environ["PYTHONHASHSEED"] = "0"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# The process that started this stage, read as early as possible: if it dies before die_with_parent
# runs, the stage has already been re-parented and must not start its work.
_STARTED_BY = os.getppid()


def die_with_parent() -> None:
    """End this stage when the process that started it (``dvc repro``) dies, so a killed run leaves
    no stage behind that would rewrite an output after the next run recovered.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, turned into SystemExit so ``atomic_dir`` and
    ``atomic_file`` remove their temporary copies; elsewhere a daemon thread watches the parent pid."""
    import signal
    import threading

    parent = _STARTED_BY
    if parent == 1:
        return  # started by init / a container's entry point: there is no parent to follow
    if os.getppid() != parent:  # the parent died while this interpreter was starting
        raise SystemExit(128 + signal.SIGTERM)

    def _exit(signum, frame):  # noqa: ARG001
        from pipeline.fsutil import request_exit

        request_exit(128 + signum)  # deferred while a finished result is being swapped into place

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os.kill(os.getpid(), signal.SIGTERM)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def clean_leftovers(args: argparse.Namespace, log: logging.Logger) -> None:
    """Remove temporary folders and files a killed run of this stage left beside its paths."""
    from pipeline.fsutil import clean_stale

    for value in vars(args).values():
        if isinstance(value, str) and value and value != DEFAULT_PARAMS:
            for path in clean_stale(value):
                log.info("removed %s, left by a run that was killed", path)


def main_for(
    stage: str,
    configure: Callable[[argparse.ArgumentParser], None],
    body: Callable[[argparse.Namespace, logging.Logger], None],
    item_arg: str | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Run a stage entry point: parse args, set up the log, run ``body``, report errors in one line."""
    if argv is None:
        _pin_hash_seed()
    parser = argparse.ArgumentParser(prog=f"python -m pipeline.stages.{stage}")
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="composed params file")
    configure(parser)
    args = parser.parse_args(argv)
    from pipeline.project import use_project

    use_project(Path(args.params).resolve().parent)  # the project's own code (DVC runs stages in the root)
    item = getattr(args, item_arg) if item_arg else None
    if argv is None:  # a process of its own (not a test calling main_for in-process)
        die_with_parent()
    logger, log_file = stage_logger(stage, item)
    start = time.perf_counter()
    try:
        clean_leftovers(args, logger)
        body(args, logger)
    except StageError as exc:
        if exc.log_file is None:
            exc = StageError(exc.stage, exc.step, exc.cause, str(log_file))
        logger.debug("%s", traceback.format_exc())
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PipelineError as exc:
        logger.debug("%s", traceback.format_exc())
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected failure: one line here, the traceback in the log
        logger.debug("%s", traceback.format_exc())
        err = StageError(stage, item, one_line(exc), str(log_file))
        print(f"error: {err}", file=sys.stderr)
        return 1
    logger.debug("done in %.2fs", time.perf_counter() - start)
    return 0
