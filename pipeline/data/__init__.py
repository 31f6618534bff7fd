"""Data for training, calibration and evaluation, as plain numpy arrays (no framework imports).

A dataset factory (a ``_target_`` in a recipe) returns :class:`Samples`. When a recipe declares no
dataset, :func:`sample_inputs` draws values from the input spec's ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pipeline.schema import Factory, InputSpec, StreamSpec

NUMPY_DTYPES = {"float32": "float32", "float16": "float16", "int64": "int64", "int32": "int32", "bool": "bool"}


@dataclass(frozen=True)
class Samples:
    """Named input arrays (batch axis first, all the same length) and optional labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        lengths = {name: len(arr) for name, arr in self.inputs.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"inputs have different lengths: {lengths}")
        if self.labels is not None and lengths and len(self.labels) != next(iter(lengths.values())):
            raise ValueError(f"labels ({len(self.labels)}) and inputs {lengths} differ in length")

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values()))) if self.inputs else 0

    def take(self, n: int) -> Samples:
        return Samples(
            {k: v[:n] for k, v in self.inputs.items()},
            None if self.labels is None else self.labels[:n],
        )


def resolve_target(target: str, key: str = "_target_", source: str | None = None) -> Any:
    """Import ``package.module.attr`` with a clear one-line error naming the key (a module that fails on
    import included: :func:`pipeline.project.import_target`)."""
    from pipeline.project import import_target

    return import_target(target, key=key, source=source)


def call_factory(factory: Factory, key: str, source: str | None = None, **extra: Any) -> Any:
    fn = resolve_target(factory.target, key=f"{key}._target_", source=source)
    return fn(**{**factory.kwargs, **extra})


def load_samples(factory: Factory, key: str, source: str | None = None) -> Samples:
    """Call a dataset factory and check it returned :class:`Samples`."""
    result = call_factory(factory, key, source)
    if not isinstance(result, Samples):
        raise ConfigError(
            f"dataset factory '{factory.target}' returned {type(result).__name__}, expected pipeline.data.Samples",
            key=key,
            source=source,
        )
    return result


def concrete_shape(spec: InputSpec, dims: dict[str, int], batch: int | None = None) -> tuple[int, ...]:
    """The input's shape with symbolic dims replaced by their values; the first dim by ``batch`` if given."""
    shape = [dims[d] if isinstance(d, str) else d for d in spec.shape]
    if batch is not None and shape:
        shape[0] = batch
    return tuple(shape)


def sample_inputs(
    inputs: list[InputSpec], dims: dict[str, int], n: int, seed: int = 0, stream: StreamSpec | None = None
) -> dict[str, np.ndarray]:
    """``n`` samples per stored input, uniform in each input's range, stored as
    ``pipeline.execution`` says: ``[n, *shape without the batch axis]`` (``[n, *shape]`` with no
    batch axis; a stream's ``[n, steps, ...]``). Constant and state inputs are not sampled."""
    import numpy as np

    from pipeline.execution import stored_shape, stored_specs

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in stored_specs(inputs, stream):
        lead = (n,) if stream is None else (n, stream.steps)
        shape = lead + stored_shape(spec, dims)
        low, high = spec.range
        if spec.dtype in ("int64", "int32"):
            arr = rng.integers(int(low), max(int(high), int(low) + 1), size=shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            arr = rng.random(size=shape) < 0.5
        else:
            arr = rng.uniform(low, high, size=shape).astype(spec.dtype)
        out[spec.name] = arr
    return out
