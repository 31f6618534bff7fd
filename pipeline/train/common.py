"""Framework-free pieces shared by the torch and keras trainers: loading labelled data, final metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.data import Samples
    from pipeline.schema import Factory, InputSpec

Evaluate = Callable[["Samples"], "dict[str, float | None]"]  # -> {"loss": ..., "top1": ...}


def load_labelled(factory: Factory, key: str, inputs: Sequence[InputSpec]) -> Samples:
    """A training/validation dataset with every declared input and labels (ConfigError naming ``key`` otherwise)."""
    from pipeline.data import load_samples
    from pipeline.sources.common import conform_samples

    samples = conform_samples(load_samples(factory, key), inputs, key)
    if samples.labels is None:
        raise ConfigError(f"dataset '{factory.target}' has no labels: training needs them", key=key)
    if len(samples) == 0:
        raise ConfigError(f"dataset '{factory.target}' is empty", key=key)
    return samples


def final_metrics(
    evaluate: Evaluate, data: Samples, val: Samples | None, epochs: int, seconds: float, log: logging.Logger
) -> dict[str, Any]:
    """``{train_loss, train_top1, val_loss, val_top1, epochs, seconds, trained}`` after training, logged."""
    final = evaluate(data)
    metrics: dict[str, Any] = {
        "train_loss": final["loss"],
        "train_top1": final["top1"],
        "val_loss": None,
        "val_top1": None,
        "epochs": epochs,
        "seconds": round(seconds, 3),
        "trained": True,
    }
    if val is not None:
        v = evaluate(val)
        metrics.update(val_loss=v["loss"], val_top1=v["top1"])
    log.info(
        "trained in %.1fs: train loss %.4f top1 %s, val loss %s top1 %s",
        seconds, metrics["train_loss"], _fmt(metrics["train_top1"]), _fmt(metrics["val_loss"]), _fmt(metrics["val_top1"]),
    )
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
