"""Task-true fidelity: the figures that say whether a build still does what the model is for.

:data:`TASK_FIDELITY` maps a model's ``task`` to a function
``fn(reference_outputs, build_outputs, inputs, spec, stream) -> {figure: float}``: the outputs are
dicts of arrays keyed by reference output name, the inputs those of ``reference.npz``; every array
has the sample axis first (a stream model's: ``[samples, steps, ...]``). Every figure is computed per
sample in float64 and reported as its worst value over samples (a minimum, or a maximum for
errors), beside a mean. The figure names are the ``fidelity.*`` paths of
``pipeline.evaluate.gates.TASK_METRICS`` (one place: the gates and the schema read them there).

==============  ============================================================================
classification  argmax over the class axis (the last, once trailing size-1 axes are dropped:
                ``[N, 1000, 1, 1]`` reads as ``[N, 1000]``); per sample, the share of its positions
                (the axes between the sample and the class axis; one for ``[N, classes]``)
                whose argmax matches: ``top1_agreement`` (over all positions), ``..._min``
embedding       pooled per sample (``fidelity.pooling``: ``mean`` over axis 1, weighted by the
                ``fidelity.mask_input`` mask; ``cls`` = position 0; ``none`` = as is), cosine
                per sample: ``embedding_cosine_min``, ``embedding_cosine_mean``
detection,      both maps binarised at ``> fidelity.threshold``; IoU per sample (both empty:
segmentation    1.0): ``iou_min``, ``iou_mean``
regression,     per sample ``abs_err`` = max |build - ref|, ``rel_err`` = ||build - ref|| /
other           ||ref|| (0 when both are zero, inf when only ref is): ``abs_err_max``,
                ``abs_err_mean``, ``rel_err_max``, ``rel_err_mean``
==============  ============================================================================

A sample whose values are not finite gets a NaN figure (so its minimum is NaN and a gate on it
fails), or counts as disagreeing (classification). :func:`check_task_fits` refuses an output the
task's metric cannot apply to (``detection`` on a 2-class vector) with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.evaluate.fidelity import per_sample_cosine

if TYPE_CHECKING:
    from pipeline.schema import FidelitySpec

Arrays = Mapping[str, np.ndarray]
TaskFidelity = Callable[[Arrays, Arrays, Arrays, "FidelitySpec", bool], dict[str, float]]


# ---------------------------------------------------------------------------------------------
# Which output, and does the task fit it
# ---------------------------------------------------------------------------------------------


def fidelity_output(spec: FidelitySpec, reference_outputs: Arrays | Sequence[str], key: str = "fidelity.output") -> str:
    """The output the task's figures read: ``spec.output``, else the first reference output."""
    names = list(reference_outputs)
    if not names:
        raise ConfigError("the model has no outputs to measure", key=key)
    if spec.output is None:
        return names[0]
    if spec.output not in names:
        raise ConfigError(f"output '{spec.output}' is not one of the model's outputs", key=key, choices=names)
    return spec.output


def _shape_text(shape: Sequence[int], stream: bool) -> str:
    axes = "[samples, steps, ...]" if stream else "[samples, ...]"
    return f"{list(shape)} {axes}"


def _class_shape(shape: Sequence[int], stream: bool) -> tuple[int, ...]:
    dims = list(shape)
    while len(dims) > (2 if stream else 1) + 1 and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def class_scores(values: np.ndarray, stream: bool, class_axis: int = -1) -> np.ndarray:
    """Class scores with the class axis last: ``class_axis`` (of the model's output, i.e. counted
    without the stored sample axis when >= 0; e.g. 1 for channel-first ``[n, classes, h, w]``) is
    moved last; then trailing size-1 axes after the sample (and steps) axes are dropped, so
    ``[N, 1000, 1, 1]`` reads as ``[N, 1000]``."""
    arr = np.asarray(values)
    if class_axis != -1:
        lead = 2 if stream else 1
        axis = class_axis + lead - 1 if class_axis >= 0 else class_axis
        arr = np.moveaxis(arr, axis, -1)
    return arr.reshape(_class_shape(arr.shape, stream))


def check_task_fits(
    task: str, spec: FidelitySpec, output_name: str, shape: Sequence[int], stream: bool, *, prefix: str = ""
) -> None:
    """Raise a one-line ConfigError (key ``task`` or ``fidelity.pooling``, under ``prefix``) when the
    task's metric cannot apply to output ``output_name`` of ``shape`` (sample axis first; a stream
    model's ``[samples, steps, ...]``)."""
    shape = tuple(int(d) for d in shape)
    lead = 2 if stream else 1  # sample axis (+ steps axis)
    per_sample = shape[lead:]
    where = f"output '{output_name}' has shape {_shape_text(shape, stream)}"
    if task == "classification":
        scores = class_scores(np.broadcast_to(np.uint8(0), shape), stream, spec.class_axis).shape  # no memory
        if len(scores) < lead + 1 or scores[-1] < 2:
            raise ConfigError(
                f"task 'classification' needs class scores on the last axis (at least 2 classes), but {where}",
                key=f"{prefix}task",
            )
    elif task == "embedding":
        if spec.pooling != "none" and len(per_sample) != 2:
            raise ConfigError(
                f"task 'embedding' with fidelity.pooling '{spec.pooling}' needs "
                f"[samples, {'steps, ' if stream else ''}positions, dim], "
                f"but {where} (an already pooled embedding: set fidelity.pooling: none)",
                key=f"{prefix}fidelity.pooling",
            )
    elif task in ("detection", "segmentation"):
        # a map: two axes of size > 1 per sample; a stream's steps are the map's (time) axis, so one
        # value per step is a map too (a voice-activity probability per chunk)
        needed = 0 if stream else 2
        big = [d for d in per_sample if d > 1]
        if len(big) < needed:
            unit = "step" if stream else "sample"
            kind = f"a {big[0]}-class vector" if big else f"a scalar per {unit}"
            raise ConfigError(
                f"task '{task}' needs a map output (at least {needed} {'axis' if needed == 1 else 'axes'} of size > 1 per {unit}), "
                f"but {where}: {task} on {kind}",
                key=f"{prefix}task",
            )


# ---------------------------------------------------------------------------------------------
# Per-task figures
# ---------------------------------------------------------------------------------------------


def _pair(reference_outputs: Arrays, build_outputs: Arrays, spec: FidelitySpec) -> tuple[str, np.ndarray, np.ndarray]:
    name = fidelity_output(spec, reference_outputs)
    if name not in build_outputs:
        raise ConfigError(f"the build has no output '{name}' (has {sorted(build_outputs)})", key="fidelity.output")
    ref = np.asarray(reference_outputs[name], dtype=np.float64)
    out = np.asarray(build_outputs[name], dtype=np.float64)
    if ref.shape != out.shape:
        raise ConfigError(
            f"output '{name}' has shape {list(out.shape)} in the build but {list(ref.shape)} in the reference",
            key="fidelity.output",
        )
    return name, ref, out


def _finite_per_sample(*arrays: np.ndarray) -> np.ndarray:
    ok = np.ones(len(arrays[0]), dtype=bool)
    for arr in arrays:
        ok &= np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
    return ok


def classification(reference_outputs: Arrays, build_outputs: Arrays, inputs: Arrays, spec: FidelitySpec,
                   stream: bool) -> dict[str, float]:
    """Top-1 agreement with the source: over all positions of all samples, and the worst sample's."""
    _, ref, out = _pair(reference_outputs, build_outputs, spec)
    ref, out = class_scores(ref, stream, spec.class_axis), class_scores(out, stream, spec.class_axis)
    agree = (out.argmax(axis=-1) == ref.argmax(axis=-1)) & np.isfinite(out).all(axis=-1)
    per_sample = agree.reshape(len(agree), -1).mean(axis=1)
    return {"top1_agreement": float(agree.mean()), "top1_agreement_min": float(per_sample.min())}


def _mask(inputs: Arrays, spec: FidelitySpec, lead_shape: tuple[int, ...]) -> np.ndarray:
    """The attention mask as float64 weights of shape ``lead_shape`` ([samples(, steps), positions])."""
    name = spec.mask_input
    if name not in inputs:
        raise ConfigError(
            f"mask input '{name}' has no per-sample values in the reference (inputs: {sorted(inputs)})",
            key="fidelity.mask_input",
        )
    mask = np.asarray(inputs[name], dtype=np.float64)
    if mask.shape != lead_shape:
        if mask.size == int(np.prod(lead_shape)):
            mask = mask.reshape(lead_shape)
        else:
            raise ConfigError(
                f"mask input '{name}' has shape {list(mask.shape)}, but the output's "
                f"[samples, positions] are {list(lead_shape)}",
                key="fidelity.mask_input",
            )
    return mask


def pool(values: np.ndarray, inputs: Arrays, spec: FidelitySpec, stream: bool) -> np.ndarray:
    """``[samples, features]``: each sample's pooled embedding (a stream's steps concatenated)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if spec.pooling == "none":
        return values.reshape(n, -1)
    lead = 2 if stream else 1
    if spec.pooling == "cls":
        return values[(slice(None),) * lead + (0,)].reshape(n, -1)
    if spec.mask_input is None:
        return values.mean(axis=lead).reshape(n, -1)
    weights = _mask(inputs, spec, values.shape[: lead + 1])[..., None]
    total = (values * weights).sum(axis=lead)
    count = weights.sum(axis=lead)
    safe = np.where(count > 0, count, 1.0)
    return np.where(count > 0, total / safe, 0.0).reshape(n, -1)


def embedding(reference_outputs: Arrays, build_outputs: Arrays, inputs: Arrays, spec: FidelitySpec,
              stream: bool) -> dict[str, float]:
    """Cosine of the pooled embeddings (what users consume; padding excluded by the mask)."""
    _, ref, out = _pair(reference_outputs, build_outputs, spec)
    cos = per_sample_cosine(pool(out, inputs, spec, stream), pool(ref, inputs, spec, stream))
    cos = np.where(_finite_per_sample(out, ref), cos, np.nan)
    return {"embedding_cosine_min": float(cos.min()), "embedding_cosine_mean": float(cos.mean())}


def iou_per_sample(build: np.ndarray, reference: np.ndarray, threshold: float) -> np.ndarray:
    """IoU of the maps binarised at ``> threshold``, per sample (1.0 when both are empty)."""
    n = len(reference)
    a = (np.asarray(build, dtype=np.float64) > threshold).reshape(n, -1)
    b = (np.asarray(reference, dtype=np.float64) > threshold).reshape(n, -1)
    inter = (a & b).sum(axis=1)
    union = (a | b).sum(axis=1)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 1.0)


def map_iou(reference_outputs: Arrays, build_outputs: Arrays, inputs: Arrays, spec: FidelitySpec,
            stream: bool) -> dict[str, float]:
    """IoU of the thresholded maps (detection / segmentation)."""
    _, ref, out = _pair(reference_outputs, build_outputs, spec)
    iou = np.where(_finite_per_sample(out, ref), iou_per_sample(out, ref, spec.threshold), np.nan)
    return {"iou_min": float(iou.min()), "iou_mean": float(iou.mean())}


def errors_per_sample(build: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(abs_err, rel_err)`` per sample: max |build - ref| and ||build - ref|| / ||ref||."""
    n = len(reference)
    ref = np.asarray(reference, dtype=np.float64).reshape(n, -1)
    diff = np.asarray(build, dtype=np.float64).reshape(n, -1) - ref
    abs_err = np.abs(diff).max(axis=1) if diff.shape[1] else np.zeros(n)
    num = np.linalg.norm(diff, axis=1)
    den = np.linalg.norm(ref, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num == 0, 0.0, np.inf))
    rel = np.where(np.isnan(num) | np.isnan(den), np.nan, rel)
    return abs_err, rel


def value_errors(reference_outputs: Arrays, build_outputs: Arrays, inputs: Arrays, spec: FidelitySpec,
                 stream: bool) -> dict[str, float]:
    """Absolute and relative error per sample (regression / other)."""
    _, ref, out = _pair(reference_outputs, build_outputs, spec)
    abs_err, rel_err = errors_per_sample(out, ref)
    return {
        "abs_err_max": float(abs_err.max()),
        "abs_err_mean": float(abs_err.mean()),
        "rel_err_max": float(rel_err.max()),
        "rel_err_mean": float(rel_err.mean()),
    }


TASK_FIDELITY: dict[str, TaskFidelity] = {
    "classification": classification,
    "embedding": embedding,
    "detection": map_iou,
    "segmentation": map_iou,
    "regression": value_errors,
    "other": value_errors,
}


def task_fidelity(
    task: str, reference_outputs: Arrays, build_outputs: Arrays, inputs: Arrays, spec: FidelitySpec, stream: bool
) -> dict[str, Any]:
    """``{"task", "output", <the task's figures>}`` for ``fidelity.*`` in the metrics JSON."""
    name = fidelity_output(spec, reference_outputs)
    check_task_fits(task, spec, name, np.shape(reference_outputs[name]), stream)
    return {"task": task, "output": name, **TASK_FIDELITY[task](reference_outputs, build_outputs, inputs, spec, stream)}
