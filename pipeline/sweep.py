"""Hydra multirun sweeps: build and evaluate one build per sweep point, then rank the points.

    python -m pipeline.sweep -m quantization=none,dynamic_int8,static_int8 target.threads=1,2
    python -m pipeline.sweep -m hydra/launcher=joblib hydra.launcher.n_jobs=2 quantization=none,static_int8
    python -m pipeline.sweep -m hydra/launcher=ray quantization=none,static_int8        (pip install '.[cluster]')
    python -m pipeline.sweep -m hparams_search=digits_int8                              (Optuna, conf/hparams_search/)

The app composes the project's ``conf/sweep.yaml`` (``./conf`` when it has one, else the framework's):
ONE build at the config root (``model``, ``passes``, ``quantization``, ``target``, ``evaluate``), so
overrides are short. Each job writes its artifacts, ``metrics.json`` and ``point.json`` (overrides,
choices, status, host) into its own job folder, and returns the sweep's objective (``objective.metric``
of its metrics; inf/-inf when it missed a gate, NaN when it failed) so that a sweeper can optimize it.

Every sweep gets a folder of its own: ``sweeps/<date>/<time>`` is created atomically (``<time>-2``,
``-3``... when another sweep took it in the same second) and locked for the sweep's lifetime; a
folder named with ``hydra.sweep.dir=`` that another sweep holds, or that already holds points, is
refused. Nothing a sweep wrote is ever overwritten by another.

Upstream work is shared: the model's ONNX export is taken from the project's DVC build when
``dvc.lock`` says ``prepare@M`` and ``export@M`` are current for the same model settings (a sweep never
rebuilds what ``dvc repro`` built); otherwise it is built once into a content-addressed cache,
``<cache_dir>/models/<key>/``, where ``key`` hashes the validated model spec, its ``watch`` path, the
modules its ``_target_``s name and the derived import closure of the prepare/export stages
(:mod:`pipeline.codedeps`, the same closure the DVC stage deps are checked against). A file lock
per key makes concurrent jobs wait for the first one. Latency is measured under the host-wide
benchmark lock, so parallel jobs (joblib, Ray, Submitit on one host) never time each other; the
lock's hold interval is recorded in point.json. A failing point is recorded (status ``failed`` with
its one-line error) and the sweep goes on; ``LeaderboardCallback`` (:mod:`pipeline.leaderboard`)
writes ``leaderboard.md`` and ``leaderboard.csv`` into the sweep folder at the end.

Turn a point into a DVC build: ``onnxbuild promote <job dir> --name NAME``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, PipelineError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
BUILD_GROUPS = ("passes", "quantization", "target", "evaluate")
POINT_FILE = "point.json"
METRICS_FILE = "metrics.json"
POINT_BUILD = "point"
SWEEP_LOCK = ".sweep.lock"
# The stage modules whose code (and everything they import) makes a model's export; the sweep's
# cache key hashes their derived import closure, like the DVC deps of prepare@M / export@M.
UPSTREAM_STAGES = ("pipeline.stages.prepare", "pipeline.stages.export")
# hydra/launcher option -> (plugin module, PyPI package, the onnxbuild extra that installs it)
LAUNCHER_PACKAGES = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher", None),
    "ray": ("hydra_plugins.hydra_ray_launcher", "hydra-ray-launcher", "cluster"),
    "ray_aws": ("hydra_plugins.hydra_ray_launcher", "hydra-ray-launcher", "cluster"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "cluster"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "cluster"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "cluster"),
}
RAY_CONNECT_TIMEOUT_S = 5.0


# ---------------------------------------------------------------------------------------------
# content address of a model's upstream work
# ---------------------------------------------------------------------------------------------


def hash_path(path: Path, h: Any) -> None:
    """Feed a file's bytes, or a folder's relative names and bytes (sorted), into ``h``."""
    if path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for sub in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(sub.relative_to(path)).encode())
            h.update(sub.read_bytes())
    else:
        h.update(b"<missing>")


def _targets(node: Any) -> Iterator[str]:
    """Every ``_target_`` string in a nested dict/list."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_" and isinstance(value, str):
                yield value
            else:
                yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


def upstream_code(spec: Any, cwd: Path) -> list[Path]:
    """The code files a model's prepare + export run: the stages' derived import closure, plus each
    module a ``_target_`` of the spec names (its closure for ``pipeline.*``, its file for the project's own)."""
    from pipeline.codedeps import closure, module_file

    files = {REPO_ROOT / p for stage in UPSTREAM_STAGES for p in closure(REPO_ROOT, stage)}
    for target in _targets(spec.model_dump(mode="json", by_alias=True)):
        if target.startswith("pipeline."):
            files |= {REPO_ROOT / p for p in closure(REPO_ROOT, target)}
            continue
        module = target
        while "." in module:
            module = module.rpartition(".")[0]
            found = module_file(cwd, module)
            if found is not None:
                files.add(found)
                break
    return sorted(files)


def model_key(spec: Any, cwd: Path) -> str:
    """Content address of a model's upstream work: its spec, its watch path and the code that builds it."""
    h = hashlib.sha256()
    h.update(json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True).encode())
    if spec.watch:
        watch = Path(spec.watch)
        hash_path(watch if watch.is_absolute() else cwd / watch, h)
    for path in upstream_code(spec, cwd):
        rel = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path.relative_to(cwd)
        h.update(rel.as_posix().encode())
        hash_path(path, h)
    return h.hexdigest()[:20]


# ---------------------------------------------------------------------------------------------
# the export: DVC's when current, else the sweep's content-addressed cache
# ---------------------------------------------------------------------------------------------


def dvc_export(model_name: str, spec: Any, cwd: Path, log: logging.Logger) -> tuple[Path, str] | None:
    """``(export folder, its DVC hash)`` when the project at ``cwd`` has a DVC-built export of this
    model that is current: params.yaml declares the same model settings and ``prepare@M`` /
    ``export@M`` are unchanged against dvc.lock (DVC's own status check). Otherwise None."""
    if not all((cwd / f).is_file() for f in ("dvc.yaml", "dvc.lock", "params.yaml")):
        return None
    try:
        from pipeline.schema import validate_model
        from pipeline.yamlio import load_yaml_file

        declared = ((load_yaml_file(cwd / "params.yaml") or {}).get("models") or {}).get(model_name)
        if declared is None:
            return None
        ours = spec.model_dump(mode="json", by_alias=True)
        if validate_model(declared, f"models.{model_name}").model_dump(mode="json", by_alias=True) != ours:
            log.info("the project's DVC build of %s has other model settings: not reused", model_name)
            return None
        from dvc.repo import Repo

        # DVC's repo lock, held for the status check only (a running `dvc repro` makes it fail: then
        # the export is built here instead)
        with Repo(str(cwd)) as repo, repo.lock:
            stages = [s for name in ("prepare", "export") for s in repo.stage.collect(f"{name}@{model_name}")]
            changed = {k: v for s in stages for k, v in s.status().items()}
            export = next(s for s in stages if s.addressing == f"export@{model_name}")
            out = export.outs[0]
            if changed or out.hash_info is None or not out.hash_info.value:
                log.info("the project's DVC export of %s is not current (%s): not reused", model_name, ", ".join(changed) or "no hash")
                return None
            return Path(out.fs_path), str(out.hash_info.value)
    except Exception as exc:  # noqa: BLE001 - introspection only: any problem means "build it here"
        log.info("DVC export of %s not reused: %s", model_name, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return None


def shared_export(spec: Any, cache_root: Path, cwd: Path, log: logging.Logger, model_name: str = "model") -> Path:
    """The model's export folder from the cache; filled on first use from the project's current DVC
    export, or else by running prepare + export."""
    from filelock import FileLock

    from pipeline.fsutil import atomic_dir, write_json

    key = model_key(spec, cwd)
    root = cache_root / "models" / key
    done = root / "done.json"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f"{key}.lock")):
        if done.is_file():
            log.info("reusing the model's export from the sweep cache (%s)", root)
            return root / "export"
        start = time.perf_counter()
        found = dvc_export(model_name, spec, cwd, log)
        if found is not None:
            src, dvc_hash = found
            log.info("reusing the DVC-built export %s (%s) in the sweep cache (%s)", src, dvc_hash, root)
            with atomic_dir(root / "export") as tmp:
                shutil.copytree(src, tmp, dirs_exist_ok=True)
            record = {"source": "dvc", "stage": f"export@{model_name}", "dvc_hash": dvc_hash}
        else:
            from pipeline.stages.export import export_model
            from pipeline.stages.prepare import prepare_model

            log.info("preparing and exporting the model into the sweep cache (%s)", root)
            prepared = prepare_model(spec, root / "source", log)
            exported = export_model(spec, root / "source", root / "export", log)
            record = {"source": "sweep", "prepare": prepared, "export": exported}
        write_json(done, {**record, "key": key, "seconds": round(time.perf_counter() - start, 3)})
    return root / "export"


# ---------------------------------------------------------------------------------------------
# one point
# ---------------------------------------------------------------------------------------------


def point_project(cfg: Any, model_name: str) -> dict[str, Any]:
    """The sweep config as a one-build project (``models: {M: ...}, builds: {point: ...}``)."""
    from omegaconf import OmegaConf

    def part(key: str) -> Any:
        node = cfg[key]
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    build = {"model": model_name, **{g: part(g) for g in BUILD_GROUPS}}
    return {"models": {model_name: part("model")}, "builds": {POINT_BUILD: build}}


def metric_at(metrics: dict[str, Any], dotted: str) -> float | None:
    """``metrics["a"]["b"]`` for ``"a.b"``; None when missing or not a number."""
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def objective_of(cfg: Any) -> tuple[str, str]:
    """``(metric path, direction)`` from the sweep config's ``objective``."""
    obj = cfg.get("objective") or {}
    metric, direction = str(obj.get("metric") or "latency_ms.p50"), str(obj.get("direction") or "minimize")
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"unknown direction '{direction}'", key="objective.direction", source="conf/sweep.yaml",
                          choices=("minimize", "maximize"))
    return metric, direction


def run_point(cfg: Any) -> float:
    """Build and evaluate the point described by ``cfg`` in Hydra's job folder; write point.json and
    return :func:`returned` (the objective; the worst score when a gate was missed; NaN when it failed)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from pipeline.evaluate.environment import host
    from pipeline.evaluate.latency import benchmark_lock
    from pipeline.evaluate.metrics import evaluate_build
    from pipeline.fsutil import write_json
    from pipeline.project import use_project
    from pipeline.schema import validate_project
    from pipeline.stages.passes import run_passes
    from pipeline.stages.quantize import quantize_build
    from pipeline.trust import load_policy

    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    cwd = Path(hc.runtime.cwd)
    use_project(cwd)  # a worker on another host or a Ray/Submitit process: the project's own code importable
    choices = {k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items() if not k.startswith("hydra/")}
    model_name = choices.get("model") or "model"
    log = logging.getLogger("onnxbuild.sweep")
    point: dict[str, Any] = {
        "job": hc.job.num if hc.mode.name == "MULTIRUN" else None,
        "overrides": list(hc.overrides.task),
        "choices": choices,
        "model": model_name,
        "host": host()["id"],  # the metrics' own host id (hostname, CPU, cores): one definition of a host
        "pid": os.getpid(),
        "status": "failed",
        "error": None,
        "objective": None,
    }
    start = time.perf_counter()
    try:
        metric, direction = objective_of(cfg)
        point["objective"] = {"metric": metric, "direction": direction, "value": None}
        data = point_project(cfg, model_name)
        # recipes are code: a sweep override may name only what the project allows (pipeline.trust)
        load_policy(cwd / "conf" / "config.yaml", cwd).check_project(data, lambda key: "conf/sweep.yaml")
        project = validate_project(data, lambda key: f"conf/sweep.yaml ({key})")
        spec, build = project.models[model_name], project.builds[POINT_BUILD]
        export_dir = shared_export(spec, Path(cfg.cache_dir), cwd, log, model_name)
        run_passes(build, spec, export_dir, job_dir / "passes", log)
        quantize_build(build, spec, job_dir / "passes", job_dir / "model", log)
        # held around the whole evaluation (evaluate_build takes it again, re-entrantly, for the
        # timed runs): the recorded interval shows that no two measurements on a host overlapped
        with benchmark_lock(log=log):
            held = [time.time()]
            metrics = evaluate_build(build, spec, job_dir / "model", export_dir, log, name=POINT_BUILD)
            held.append(time.time())
        point["benchmark_lock_held"] = held
        write_json(job_dir / METRICS_FILE, metrics)
        failures = metrics["gates"]["failures"]
        point["status"] = "gates failed" if failures else "ok"
        point["error"] = "; ".join(failures) or None
        point["gate_failures"] = list(failures)
        point["objective"]["value"] = metric_at(metrics, metric)
        if point["objective"]["value"] is None:
            raise ConfigError(f"the metrics have no number at '{metric}'", key="objective.metric", source="conf/sweep.yaml")
    except PipelineError as exc:
        point["status"], point["error"] = "failed", str(exc)
        log.error("point failed: %s", exc)
    except Exception as exc:  # keep the sweep going; the traceback is in the job's log
        point["status"] = "failed"
        point["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        log.exception("point failed")
    point["seconds"] = round(time.perf_counter() - start, 2)
    write_json(job_dir / POINT_FILE, point)
    log.info("point %s: %s%s", " ".join(point["overrides"]), point["status"], f" ({point['error']})" if point["error"] else "")
    return returned(point)


def returned(point: dict[str, Any]) -> float:
    """What a point returns to the sweeper: its objective when it passed its gates; the worst score
    (inf when minimizing, -inf when maximizing) when it missed a gate, so that no sweeper (Hydra's
    Optuna or Nevergrad plugins included) takes a gate-failed point for a good one; NaN when it failed.
    (onnxbuild's own Optuna sweeper reads point.json and makes the missed gates a constraint.)"""
    objective = point.get("objective") or {}
    value = objective.get("value")
    if point.get("status") == "failed" or value is None:
        return math.nan
    if point.get("status") != "ok":
        return -math.inf if objective.get("direction") == "maximize" else math.inf
    return float(value)


# ---------------------------------------------------------------------------------------------
# the sweep folder: unique and locked
# ---------------------------------------------------------------------------------------------


def claim_new_dir(base: Path, now: _dt.datetime | None = None) -> Path:
    """Create and return ``base/<date>/<time>`` (``<time>-2``, ``-3``... when taken): ``mkdir`` is atomic,
    so two sweeps started in the same second get two folders."""
    now = now or _dt.datetime.now()
    day = base / now.strftime("%Y-%m-%d")
    stem = now.strftime("%H-%M-%S")
    try:
        day.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = day / (stem if n == 1 else f"{stem}-{n}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as exc:
        raise ConfigError(f"cannot create a sweep folder: {exc.strerror or exc}", key="hydra.sweep.dir",
                          source=str(day)) from None
    raise PipelineError(f"no free sweep folder under {day}")


@contextmanager
def sweep_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder/.sweep.lock`` for the sweep's lifetime; a folder another sweep holds, or that
    already holds a sweep's points, is refused (one line) instead of overwritten."""
    from filelock import FileLock, Timeout

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the sweep folder: {exc.strerror or exc}", key="hydra.sweep.dir",
                          source=str(folder)) from None
    lock = FileLock(str(folder / SWEEP_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError("another sweep is writing into this folder: choose another one", key="hydra.sweep.dir",
                          source=str(folder)) from None
    try:
        if any(folder.glob(f"*/{POINT_FILE}")) or (folder / POINT_FILE).is_file():
            raise ConfigError("this folder holds an earlier sweep's points: choose another one (nothing was overwritten)",
                              key="hydra.sweep.dir", source=str(folder))
        yield folder
    finally:
        lock.release()


def _arg_value(argv: Sequence[str], key: str) -> str | None:
    """The value of ``key=VALUE`` (also ``+key=``/``++key=``) among Hydra command-line overrides."""
    for arg in argv:
        name, sep, value = arg.lstrip("+").partition("=")
        if sep and name == key:
            return value
    return None


def _config_dir(argv: Sequence[str], cwd: Path) -> tuple[Path, list[str]]:
    """The sweep's config folder (``--config-path``/``-cp``, else ``./conf`` when it has sweep.yaml,
    else the framework's), and argv without that option."""
    rest, given = [], None
    it = iter(argv)
    for arg in it:
        if arg in ("--config-path", "-cp"):
            given = next(it, None)
        elif arg.startswith("--config-path="):
            given = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if given:
        return (cwd / given).resolve(), rest
    return (cwd / "conf" if (cwd / "conf" / "sweep.yaml").is_file() else CONF_DIR), rest


def launcher_kind(argv: Sequence[str], conf_dir: Path) -> str | None:
    """The ``hydra/launcher`` option, resolved through a project file's defaults (``slurm`` ->
    ``submitit_slurm``, ``ray_cluster`` -> ``ray``) to a plugin's own option; None when not set."""
    from pipeline.yamlio import load_yaml_file

    name = _arg_value(argv, "hydra/launcher")
    seen: set[str] = set()
    while name is not None and name not in LAUNCHER_PACKAGES and name not in seen:
        seen.add(name)
        path = conf_dir / "hydra" / "launcher" / f"{name}.yaml"
        if not path.is_file():
            break
        parents = [e for e in (load_yaml_file(path) or {}).get("defaults") or [] if isinstance(e, str) and e != "_self_"]
        if not parents:
            break
        name = parents[0]
    return name


def check_launcher(argv: Sequence[str], conf_dir: Path) -> None:
    """A launcher whose plugin is not installed: one line naming the package and the extra."""
    name = launcher_kind(argv, conf_dir)
    if name not in LAUNCHER_PACKAGES:
        return
    module, package, extra = LAUNCHER_PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        install = f"pip install -c requirements/constraints.txt '.[{extra}]'" if extra else f"pip install {package}"
        raise ConfigError(f"the {name} launcher needs the package {package}, which is not installed: {install}",
                          key="hydra/launcher")


def check_ray_address(argv: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """A Ray cluster address that does not answer: one line after a short timeout, not a hang."""
    if launcher_kind(argv, conf_dir) != "ray":
        return
    address = _arg_value(argv, "hydra.launcher.ray.init.address") or os.environ.get("RAY_ADDRESS")
    if not address or address in ("null", "auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"'{address}' is not HOST:PORT (or ray://HOST:PORT)", key="hydra.launcher.ray.init.address")
    why = grpc_answers(host, int(port), RAY_CONNECT_TIMEOUT_S)
    if why:
        raise ConfigError(
            f"no Ray cluster answers at {address} within {RAY_CONNECT_TIMEOUT_S:.0f} s ({why}): "
            "start one with `ray start --head` or fix the address",
            key="hydra.launcher.ray.init.address",
        )


def grpc_answers(host: str, port: int, timeout: float) -> str | None:
    """None when ``host:port`` answers the standard gRPC health check (Ray's GCS does: SERVING);
    otherwise why not (refused, timed out, not a gRPC server)."""
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=timeout)
    except grpc.RpcError as exc:
        details = (exc.details() or "").strip().splitlines()
        return f"{exc.code().name.lower()}: {details[0] if details else ''}".rstrip(": ")
    finally:
        channel.close()
    return None


def check_search(argv: Sequence[str], conf_dir: Path) -> None:
    """``hparams_search=NAME`` must name a file of ``conf/hparams_search/``: the group is optional in
    conf/sweep.yaml, so Hydra would silently drop a misspelt one and run the defaults instead of a search."""
    name = _arg_value(argv, "hparams_search")
    if name in (None, "", "null"):
        return
    folder = conf_dir / "hparams_search"
    if not (folder / f"{name}.yaml").is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise ConfigError(f"no search space '{name}' in {folder}", key="hparams_search", choices=known or None)


def _app(conf_dir: Path) -> Any:
    import hydra

    @hydra.main(config_path=str(conf_dir), config_name="sweep", version_base=None)
    def app(cfg: Any) -> float:
        return run_point(cfg)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.project import use_project

    argv = list(sys.argv[1:] if argv is None else argv)
    cwd = Path.cwd()
    conf_dir, argv = _config_dir(argv, cwd)
    use_project(conf_dir=conf_dir)  # the project's own models, datasets and metrics (workers inherit sys.path)
    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        check_launcher(argv, conf_dir)
        check_ray_address(argv, conf_dir)
        check_search(argv, conf_dir)
        given = _arg_value(argv, key)
        folder = Path(given) if given else claim_new_dir(cwd / ("sweeps" if multirun else "sweeps/runs"))
        folder = folder if folder.is_absolute() else cwd / folder
        argv = [a for a in argv if _arg_value([a], key) is None] + [f"{key}={folder}"]
        with sweep_lock(folder):
            sys.argv = [sys.argv[0], *argv]
            _app(conf_dir)()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
