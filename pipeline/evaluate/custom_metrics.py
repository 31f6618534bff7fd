"""Custom fidelity metrics declared by a model (``metrics:``) or a build (``evaluate.metrics:``).

Each :class:`pipeline.schema.MetricSpec` names a function (``_target_``, imported with
``pipeline.data.resolve_target``; running user code is the contract, as for model factories) that is
called as ``fn(source_outputs, build_outputs, inputs, labels, **kwargs)`` (dicts of numpy arrays keyed
by reference output / input name, sample axis first; labels or None) and returns ``{name: number}``.
Each name in ``provides`` lands in ``metrics["custom"][name]`` and can be gated by that name.

A metric that raises, returns no mapping, misses a declared name or gives a non-number (or NaN)
costs one log line ``error: custom metric '<_target_>' ...`` (the traceback goes to the stage log at
debug level) and an entry in ``metrics["custom_errors"][<_target_>]``; every other metric is still
written, and a gate on a missing name fails as "not measured".
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.errors import one_line

if TYPE_CHECKING:
    import numpy as np

    from pipeline.schema import MetricSpec


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a real, non-NaN number (numpy scalars and 0-d arrays too)."""
    if hasattr(value, "shape") and getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def run_custom_metrics(
    specs: Sequence[MetricSpec],
    source_outputs: Mapping[str, np.ndarray],
    build_outputs: Mapping[str, np.ndarray],
    inputs: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    log: logging.Logger,
) -> tuple[dict[str, float], dict[str, str]]:
    """``(values by name, error message by _target_)`` of every declared metric."""
    from pipeline.data import resolve_target

    values: dict[str, float] = {}
    errors: dict[str, list[str]] = {}

    def fail(target: str, message: str, exc: BaseException | None = None) -> None:
        log.error("error: custom metric '%s' %s", target, message)
        if exc is not None:
            log.debug("custom metric '%s' traceback", target, exc_info=exc)
        errors.setdefault(target, []).append(message)

    for spec in specs:
        target = spec.target
        try:
            fn = resolve_target(target, key="metrics._target_")
            result = fn(dict(source_outputs), dict(build_outputs), dict(inputs), labels, **spec.kwargs)
        except Exception as exc:  # user code: any failure is this metric's, not the stage's
            fail(target, f"raised {one_line(exc)}", exc)
            continue
        if not isinstance(result, Mapping):
            fail(target, f"returned {type(result).__name__}, expected a mapping of {list(spec.provides)} to numbers")
            continue
        for name in spec.provides:
            if name not in result:
                fail(target, f"returned no '{name}' (declared in provides; got {sorted(map(str, result))})")
                continue
            number = _number(result[name])
            if number is None:
                fail(target, f"returned {result[name]!r} for '{name}', expected a number")
                continue
            values[name] = number
    return values, {target: "; ".join(messages) for target, messages in errors.items()}
