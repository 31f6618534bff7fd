"""Custom metrics for tests (imported by dotted path: ``tests.evaluate.custom_metric_fixture.<fn>``)."""

from __future__ import annotations

import numpy as np


def worst_share_within(source_outputs, build_outputs, inputs, labels, output="y", tol=0.1):
    """``within_tol``: the share of samples whose every value is within ``tol`` of the source's;
    ``max_diff``: the largest absolute difference."""
    diff = np.abs(np.asarray(build_outputs[output], np.float64) - np.asarray(source_outputs[output], np.float64))
    per_sample = diff.reshape(len(diff), -1).max(axis=1)
    return {"within_tol": float(np.mean(per_sample <= tol)), "max_diff": np.float32(diff.max())}


def labelled_count(source_outputs, build_outputs, inputs, labels):
    """``num_labels``: how many labels the metric was given (0 without labels)."""
    return {"num_labels": 0 if labels is None else len(labels), "num_inputs": len(inputs)}


def raises(source_outputs, build_outputs, inputs, labels):
    raise RuntimeError("metric exploded on purpose")


def not_a_mapping(source_outputs, build_outputs, inputs, labels):
    return [1.0]


def nan_value(source_outputs, build_outputs, inputs, labels):
    return {"bad": float("nan"), "text": "high"}
