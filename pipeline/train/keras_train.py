"""Deterministic CPU training and fine-tuning of a Keras 3 model (TensorFlow backend).

Inside :func:`deterministic` Keras/TensorFlow/numpy/python RNGs are seeded with ``TrainSpec.seed``
and TensorFlow's op determinism is on, so the same recipe trains the same weights; build the model
inside the block so its initial weights are seeded too. Thread counts are fixed at
:data:`TRAIN_THREADS` when TensorFlow has not started yet (floating-point reductions depend on how
work is split across threads). Metrics match the torch trainer's:
``{train_loss, train_top1, val_loss, val_top1, epochs, seconds, trained}``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.sources.tf_convert import import_tf

if TYPE_CHECKING:
    import logging

    import numpy as np

    from pipeline.data import Samples
    from pipeline.schema import InputSpec, TrainSpec

TRAIN_THREADS = 2
EVAL_BATCH = 256


@contextlib.contextmanager
def deterministic(seed: int, threads: int = TRAIN_THREADS) -> Iterator[None]:
    """Seed every RNG Keras uses, turn on TensorFlow op determinism, and fix the thread pools if
    TensorFlow has not initialized them yet."""
    import keras

    tf = import_tf()
    with contextlib.suppress(RuntimeError):  # thread pools are fixed once TF has run an op
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    yield


def _feed(model, samples: Samples, names: Sequence[str]) -> Any:
    """What ``model.fit``/``predict`` take: the array for one input, else a dict by input name."""
    if len(names) == 1:
        return samples.inputs[names[0]]
    model_names = [t.name.split(":")[0] for t in model.inputs] if getattr(model, "inputs", None) else []
    if set(model_names) == set(names):
        return {n: samples.inputs[n] for n in names}
    return [samples.inputs[n] for n in names]


def _loss(kind: str):
    import keras

    if kind == "cross_entropy":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return keras.losses.MeanSquaredError()


def _targets(kind: str, labels: np.ndarray, out_dim: int | None) -> np.ndarray:
    """Class labels as given for cross-entropy; one-hot for mse on class scores."""
    import numpy as np

    if kind == "mse" and labels.ndim == 1 and labels.dtype.kind in "iu" and out_dim:
        return np.eye(out_dim, dtype=np.float32)[labels]
    return labels


def _out_dim(model) -> int | None:
    shape = getattr(model, "output_shape", None)
    if isinstance(shape, tuple) and len(shape) == 2:
        return shape[1]
    return None


def evaluate(model, samples: Samples, names: Sequence[str], loss: str) -> dict[str, float | None]:
    """Mean loss and top-1 accuracy (integer class labels and [n, classes] outputs only)."""
    import numpy as np

    out = model.predict(_feed(model, samples, names), batch_size=EVAL_BATCH, verbose=0)
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    out = np.asarray(out)
    labels = np.asarray(samples.labels)
    value = float(_loss(loss)(_targets(loss, labels, out.shape[-1] if out.ndim == 2 else None), out))
    classify = labels.ndim == 1 and labels.dtype.kind in "iu" and out.ndim == 2
    top1 = float((out.argmax(axis=1) == labels).mean()) if classify and len(labels) else None
    return {"loss": value, "top1": top1}


def train(model, spec: TrainSpec, inputs: Sequence[InputSpec], log: logging.Logger, key: str = "train") -> dict[str, Any]:
    """Train ``model`` in place per ``spec`` (call inside :func:`deterministic`). Cross-entropy
    expects logits and integer labels. Returns the metrics dict."""
    import keras
    from tqdm import tqdm

    from pipeline.train.common import final_metrics, load_labelled

    names = [s.name for s in inputs]
    data = load_labelled(spec.dataset, f"{key}.dataset", inputs)
    val = load_labelled(spec.val_dataset, f"{key}.val_dataset", inputs) if spec.val_dataset else None
    decay = spec.weight_decay or None
    if spec.optimizer == "adam":
        opt = keras.optimizers.Adam(learning_rate=spec.lr, weight_decay=decay)
    else:
        opt = keras.optimizers.SGD(learning_rate=spec.lr, momentum=spec.momentum, weight_decay=decay)
    model.compile(optimizer=opt, loss=_loss(spec.loss))
    y = _targets(spec.loss, data.labels, _out_dim(model))
    n = len(data)
    steps = math.ceil(n / spec.batch_size)
    log.info(
        "training %d epochs on %d samples (%s, lr %g, batch %d, seed %d)",
        spec.epochs, n, spec.optimizer, spec.lr, spec.batch_size, spec.seed,
    )

    bar = tqdm(total=spec.epochs * steps, desc="train", unit="step", leave=False, mininterval=0.5)

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            bar.update(1)
            if logs and "loss" in logs:
                bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            log.debug(
                "epoch %d/%d: %s", epoch + 1, spec.epochs, ", ".join(f"{k} {float(v):.4f}" for k, v in logs.items())
            )

    start = time.perf_counter()
    try:
        model.fit(
            _feed(model, data, names),
            y,
            batch_size=spec.batch_size,
            epochs=spec.epochs,
            shuffle=True,
            verbose=0,
            callbacks=[Progress()],
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    metrics = final_metrics(lambda d: evaluate(model, d, names, spec.loss), data, val, spec.epochs, seconds, log)
    return metrics
