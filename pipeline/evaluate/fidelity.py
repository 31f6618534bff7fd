"""Fidelity of a build against the source framework's outputs, and top-1 accuracy.

All math runs in float64 after casting (float16 models included). Cosine similarity is taken per
sample (each sample's output flattened), and the minimum over samples is reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.errors import StageError

ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
DEFAULT_CHUNK = 32


def fixed_batch(session: Any) -> int | None:
    """The fixed leading (batch) dim of the session's inputs, or None when it is symbolic."""
    fixed = {i.shape[0] for i in session.get_inputs() if i.shape and isinstance(i.shape[0], int)}
    if len(fixed) > 1:
        raise StageError("evaluate", "inputs", f"inputs have different fixed batch dims {sorted(fixed)}")
    return fixed.pop() if fixed else None


def cast_feeds(session: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pick the session's inputs from ``inputs`` and cast them to the dtypes the session expects."""
    feeds = {}
    for spec in session.get_inputs():
        if spec.name not in inputs:
            raise StageError(
                "evaluate",
                "inputs",
                f"the model wants input '{spec.name}' but reference.npz has {sorted(inputs)}",
            )
        arr = inputs[spec.name]
        want = ORT_TYPES.get(spec.type)
        feeds[spec.name] = np.ascontiguousarray(arr.astype(want, copy=False) if want is not None else arr)
    return feeds


def run_batched(session: Any, inputs: dict[str, np.ndarray], chunk: int = DEFAULT_CHUNK) -> dict[str, np.ndarray]:
    """Run all samples through ``session`` in batches; outputs by name, concatenated on axis 0.

    A model with a fixed batch dim is fed batches of exactly that size (the last one padded by
    repeating its final sample; padded outputs are dropped).
    """
    n = len(next(iter(inputs.values())))
    size = fixed_batch(session) or chunk
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, n, size):
        batch = {k: v[start : start + size] for k, v in inputs.items()}
        real = len(next(iter(batch.values())))
        if fixed_batch(session) is not None and real < size:
            batch = {k: np.concatenate([v, np.repeat(v[-1:], size - real, axis=0)]) for k, v in batch.items()}
        results = session.run(None, cast_feeds(session, batch))
        for name, value in zip(names, results):
            value = np.asarray(value)
            if value.ndim == 0:
                raise StageError("evaluate", "fidelity", f"output '{name}' is a scalar, not one value per sample")
            parts[name].append(value[:real])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def per_sample_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's flattened values (1.0 when both are all zero)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    dot = np.einsum("ij,ij->i", a, b)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = na * nb
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, dot / np.where(denom > 0, denom, 1.0), 0.0)
    return np.where(both_zero, 1.0, cos)


def _errors(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    cos = per_sample_cosine(a, b)
    return {
        "max_abs_err": float(diff.max()) if diff.size else 0.0,
        "mean_abs_err": float(diff.mean()) if diff.size else 0.0,
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "nonfinite": int(np.size(a) - np.count_nonzero(np.isfinite(np.asarray(a, dtype=np.float64)))),
    }


def match_outputs(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """Pairs (build output, reference output): by name, or by position when names differ but counts agree."""
    if set(outputs) == set(reference):
        return [(name, name) for name in reference]
    if len(outputs) == len(reference):
        return list(zip(outputs, reference))
    raise StageError(
        "evaluate",
        "fidelity",
        f"the build's outputs {list(outputs)} do not match reference.npz outputs {list(reference)}",
    )


def compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, Any]:
    """Fidelity over all outputs together, and per output (``per_output``)."""
    pairs = match_outputs(outputs, reference)
    per_output = {}
    flat_out, flat_ref = [], []
    for out_name, ref_name in pairs:
        a, b = outputs[out_name], reference[ref_name]
        if a.shape != b.shape:
            raise StageError(
                "evaluate",
                "fidelity",
                f"output '{out_name}' has shape {list(a.shape)} but the reference has {list(b.shape)}",
            )
        per_output[ref_name] = _errors(a, b)
        flat_out.append(np.asarray(a, dtype=np.float64).reshape(len(a), -1))
        flat_ref.append(np.asarray(b, dtype=np.float64).reshape(len(b), -1))
    result = _errors(np.concatenate(flat_out, axis=1), np.concatenate(flat_ref, axis=1))
    result["samples"] = int(len(flat_ref[0]))
    result["per_output"] = per_output
    return result


def top1(values: np.ndarray) -> np.ndarray:
    """Predicted class per sample (argmax over the last axis)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 2:
        raise StageError("evaluate", "fidelity", f"a classifier output needs a class axis, got shape {list(values.shape)}")
    return values.argmax(axis=-1)


def top1_agreement(output: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of predictions (samples, or positions for sequence outputs) where build and source agree."""
    return float(np.mean(top1(output) == top1(reference)))


def accuracy(output: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of class scores against integer labels (same leading shape as the predictions)."""
    pred = top1(output)
    labels = np.asarray(labels)
    if labels.shape != pred.shape:
        labels = labels.reshape(pred.shape) if labels.size == pred.size else labels
    if labels.shape != pred.shape:
        raise StageError(
            "evaluate",
            "accuracy",
            f"labels have shape {list(labels.shape)} but predictions have {list(pred.shape)}",
        )
    return float(np.mean(pred == labels.astype(np.int64)))
