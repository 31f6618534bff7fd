"""Optuna search over recipe choices, driven through any Hydra launcher (the ``onnxbuild_optuna`` sweeper).

    python -m pipeline.sweep -m hparams_search=digits_int8

A search space (``hydra.sweeper.params`` in a ``conf/hparams_search/`` file) maps a sweep override
key to Hydra's sweep syntax, optionally only when earlier choices have given values::

    quantization: choice(none, dynamic_int8, static_int8)
    target.threads: range(1, 3)                        # 1, 2 (Hydra ranges exclude the end)
    quantization.calibration.method:
      values: choice(minmax, entropy)
      when: {quantization: static_int8}

Each trial is one sweep point (its own job folder); the point returns the objective
(``objective.metric`` of conf/sweep.yaml). A point that missed a gate is infeasible: its number of
failed gates is an Optuna constraint (``Trial.set_constraint``, which TPE honours), so it is never "best" however fast
it is; a point that failed is a failed trial. A repeated choice is not rebuilt: its earlier result is
told again. The space is checked before the first trial: a key the sweep config does not have, a
group option that does not exist or a value the schema refuses is one line naming it.
``optuna.json`` in the sweep folder lists every trial and the best feasible one.

The released ``hydra-optuna-sweeper`` (1.3.0) pins optuna<3, whose TPE sampler has no constraints;
this drives Optuna 5's library directly, with Hydra's launchers doing the work.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

RESULTS = "optuna.json"
SAMPLERS = ("tpe", "random")
log = logging.getLogger("onnxbuild.sweep")


@dataclass
class Param:
    key: str
    kind: str  # choice | int | float
    values: list[Any] = field(default_factory=list)  # choice
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    when: dict[str, list[str]] = field(default_factory=dict)

    def candidates(self) -> list[Any]:
        """Values to check at compose time: every choice, or the ends of a range."""
        if self.kind == "choice":
            return list(self.values)
        return [self.low, self.high]


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def parse_space(params: Mapping[str, Any], source: str = "hydra.sweeper.params") -> list[Param]:
    """The search space, in declaration order (a ``when`` may only name an earlier key)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    parser = OverridesParser.create()
    out: list[Param] = []
    for key, spec in (params or {}).items():
        key = str(key)
        when: dict[str, list[str]] = {}
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"values", "when"}
            if unknown or "values" not in spec:
                raise ConfigError(f"a conditional parameter has 'values' and 'when' (got {sorted(spec)})",
                                  key=f"{source}.{key}")
            for dep, allowed in (spec.get("when") or {}).items():
                if str(dep) not in {p.key for p in out}:
                    raise ConfigError(f"'when' names '{dep}', which is not an earlier parameter", key=f"{source}.{key}",
                                      choices=[p.key for p in out])
                allowed = allowed if isinstance(allowed, (list, tuple)) else [allowed]
                when[str(dep)] = [_override_value(a) for a in allowed]
            spec = spec["values"]
        try:
            value = parser.parse_override(f"{key}={spec}").value()
        except Exception as exc:  # noqa: BLE001 - Hydra's grammar errors
            raise ConfigError(f"not a sweep ({str(exc).strip().splitlines()[0]})", key=f"{source}.{key}") from None
        if isinstance(value, ChoiceSweep):
            out.append(Param(key, "choice", values=list(value.list), when=when))
        elif isinstance(value, RangeSweep):
            step = value.step or 1
            kind = "int" if all(float(x).is_integer() for x in (value.start, value.stop, step)) else "float"
            high = value.stop - step  # Hydra's range excludes its end
            out.append(Param(key, kind, low=value.start, high=high, step=step, when=when))
        elif isinstance(value, IntervalSweep):
            out.append(Param(key, "float", low=float(value.start), high=float(value.end), log="log" in value.tags, when=when))
        else:
            raise ConfigError(f"'{spec}' is not choice(...), range(...) or interval(...)", key=f"{source}.{key}")
    return out


def active(param: Param, chosen: Mapping[str, Any]) -> bool:
    return all(_override_value(chosen.get(dep)) in allowed for dep, allowed in param.when.items())


def validate_space(space: Sequence[Param], arguments: Sequence[str], compose: Callable[[list[str]], Any],
                   check: Callable[[Any], None], source: str) -> None:
    """Compose the sweep config with every candidate value of every parameter (its ``when`` choices
    set) and check it with ``check``: a wrong key, option or value is one line naming the parameter."""
    for param in space:
        conditions = [f"{dep}={allowed[0]}" for dep, allowed in param.when.items()]
        for value in param.candidates():
            value = int(value) if param.kind == "int" else value
            overrides = [*arguments, *conditions, f"{param.key}={_override_value(value)}"]
            try:
                check(compose(overrides))
            except ConfigError as exc:
                raise ConfigError(f"{param.key}={_override_value(value)}: {exc}", key=f"hydra.sweeper.params.{param.key}",
                                  source=source) from None
            except Exception as exc:  # noqa: BLE001 - Hydra's composition errors (missing key or option)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"{param.key}={_override_value(value)}: {first}", key=f"hydra.sweeper.params.{param.key}",
                                  source=source) from None


def suggest(trial: Any, space: Sequence[Param]) -> dict[str, Any]:
    """Define-by-run: the trial's values for the active parameters, in order."""
    chosen: dict[str, Any] = {}
    for param in space:
        if not active(param, chosen):
            continue
        if param.kind == "choice":
            chosen[param.key] = trial.suggest_categorical(param.key, param.values)
        elif param.kind == "int":
            chosen[param.key] = trial.suggest_int(param.key, int(param.low), int(param.high), step=int(param.step or 1))
        else:
            chosen[param.key] = trial.suggest_float(param.key, float(param.low), float(param.high), log=param.log,
                                                    step=None if param.log or param.step is None else float(param.step))
    return chosen


def make_study(direction: str, sampler: str, seed: int, n_startup_trials: int) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "tpe":
        chosen = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    elif sampler == "random":
        chosen = optuna.samplers.RandomSampler(seed=seed)
    else:
        raise ConfigError(f"unknown sampler '{sampler}'", key="hydra.sweeper.sampler", choices=SAMPLERS)
    return optuna.create_study(direction=direction, sampler=chosen)


def read_point(job_dir: Path) -> dict[str, Any] | None:
    from pipeline.sweep import POINT_FILE

    path = job_dir / POINT_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing or unreadable: a failed trial, and the search goes on
        return None
    return data if isinstance(data, dict) else None


def outcome(point: dict[str, Any] | None) -> tuple[str, float | None, float | None]:
    """``(state, objective, constraint)`` of a point: ``complete`` with constraint 0 when it passed its
    gates, ``complete`` with constraint = number of missed gates, or ``fail``."""
    if point is None or point.get("status") == "failed":
        return "fail", None, None
    value = (point.get("objective") or {}).get("value")
    if value is None or not math.isfinite(float(value)):
        return "fail", None, None
    missed = len(point.get("gate_failures") or []) or (1 if point.get("status") != "ok" else 0)
    return "complete", float(value), float(missed)


def run_search(
    space: Sequence[Param],
    arguments: Sequence[str],
    launch: Callable[[list[list[str]], int], list[Any]],
    job_dir_of: Callable[[Any], Path],
    sweep_dir: Path,
    n_trials: int,
    n_jobs: int,
    direction: str,
    sampler: str = "tpe",
    seed: int = 0,
    n_startup_trials: int = 10,
) -> dict[str, Any]:
    """Ask/tell loop: ``n_jobs`` trials per launch; writes and returns ``optuna.json``'s content."""
    import optuna

    from pipeline.fsutil import write_json

    study = make_study(direction, sampler, seed, n_startup_trials)
    done: dict[tuple[str, ...], dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    next_job = 0
    while len(records) < n_trials:
        batch = min(max(1, n_jobs), n_trials - len(records))
        asked = [(t, suggest(t, space)) for t in (study.ask() for _ in range(batch))]
        unique: dict[tuple[str, ...], list[tuple[Any, dict[str, Any]]]] = {}
        for trial, chosen in asked:
            key = tuple(f"{k}={_override_value(v)}" for k, v in chosen.items())
            if key in done:  # a repeated choice: its earlier result, not a rebuild
                _tell(study, trial, done[key], records, chosen, repeat=True)
            else:
                unique.setdefault(key, []).append((trial, chosen))
        if unique:
            keys = list(unique)
            returns = launch([[*arguments, *key] for key in keys], next_job)
            next_job += len(keys)
            for key, ret in zip(keys, returns):
                job_dir = job_dir_of(ret)
                state, value, constraint = outcome(read_point(job_dir))
                result = {"state": state, "value": value, "constraint": constraint, "job_dir": str(job_dir),
                          "overrides": [*key]}
                done[key] = result
                for i, (trial, chosen) in enumerate(unique[key]):
                    _tell(study, trial, result, records, chosen, repeat=i > 0)
    feasible = [r for r in records if r["state"] == "complete" and r["constraint"] == 0 and not r["repeat"]]
    pick = min if direction == "minimize" else max
    best = pick(feasible, key=lambda r: r["value"]) if feasible else None
    results = {
        "direction": direction,
        "sampler": sampler,
        "seed": seed,
        "n_trials": n_trials,
        "trials": records,
        "feasible": len({r["job_dir"] for r in feasible}),
        "best": best,
        "optuna_version": optuna.__version__,
    }
    write_json(sweep_dir / RESULTS, results)
    if best is not None:
        print(f"best feasible point: {best['job_dir']} ({' '.join(best['overrides'])}): objective {best['value']:.6g}")
        print(f"make it a DVC build:  onnxbuild promote {best['job_dir']} --name NAME")
    else:
        print("no feasible point: every trial failed or missed a gate (see optuna.json and leaderboard.md)")
    return results


def _tell(study: Any, trial: Any, result: dict[str, Any], records: list[dict[str, Any]], chosen: dict[str, Any],
          repeat: bool) -> None:
    from optuna.trial import TrialState

    if result["state"] == "fail":
        study.tell(trial, state=TrialState.FAIL)
    else:
        trial.set_constraint("gates_missed", result["constraint"])  # > 0: infeasible
        study.tell(trial, result["value"])
    records.append({"trial": trial.number, "params": {k: v for k, v in chosen.items()}, **result, "repeat": repeat})
