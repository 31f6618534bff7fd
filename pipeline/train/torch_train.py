"""Deterministic CPU training and fine-tuning of a torch module on a recipe's dataset.

The same recipe gives byte-identical checkpoints: inside :func:`deterministic` the global RNGs are
seeded (and restored afterwards), ``torch.use_deterministic_algorithms(True)`` is on, the intra-op
thread count is fixed at :data:`TRAIN_THREADS` (floating-point reductions depend on how work is
split across threads), and the data order comes from a generator seeded by ``TrainSpec.seed``.
Build the module inside the same block so its initial weights are seeded too.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn


if TYPE_CHECKING:
    import logging

    from pipeline.data import Samples
    from pipeline.schema import InputSpec, TrainSpec

# Fixed for reproducibility: the checkpoint bytes depend on the thread count (measured: 1 and 2
# threads give different weights), so it must not follow the machine's core count. One thread also
# avoids oversubscription when DVC or a sweep runs several stages at once (2 threads on a busy
# 2-core machine trained the default CNN about 2x slower than 1).
TRAIN_THREADS = 1
EVAL_BATCH = 256


@contextlib.contextmanager
def deterministic(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seed torch/numpy/python RNGs, enforce deterministic kernels and a fixed thread count; restore
    the previous state on exit. ``threads`` defaults to :data:`TRAIN_THREADS`."""
    import random

    threads = TRAIN_THREADS if threads is None else threads
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.set_num_threads(prev_threads)
            random.setstate(py_state)
            np.random.set_state(np_state)


def _to_tensors(samples: Samples, names: Sequence[str], idx: np.ndarray | slice) -> dict[str, torch.Tensor]:
    return {n: torch.from_numpy(np.ascontiguousarray(samples.inputs[n][idx])) for n in names}


def _loss_fn(kind: str):
    if kind == "cross_entropy":
        return nn.functional.cross_entropy

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dtype in (torch.int64, torch.int32) and out.dim() == 2 and target.dim() == 1:
            target = nn.functional.one_hot(target.long(), out.shape[1])  # class labels vs scores
        return nn.functional.mse_loss(out, target.to(out.dtype).reshape(out.shape))

    return mse


def _first_output(out: Any) -> torch.Tensor:
    """The tensor to train on: the output itself, the first of a tuple, or ``.logits`` (transformers)."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"cannot train on a model output of type {type(out).__name__}")


@torch.no_grad()
def evaluate(module: nn.Module, samples: Samples, names: Sequence[str], loss: str) -> dict[str, float | None]:
    """Mean loss and top-1 accuracy (classification labels only) of ``module`` in eval mode."""
    module.eval()
    fn = _loss_fn(loss)
    total, correct, n = 0.0, 0, len(samples)
    labels = torch.from_numpy(np.asarray(samples.labels))
    classify = labels.dtype in (torch.int64, torch.int32) and labels.dim() == 1
    for start in range(0, n, EVAL_BATCH):
        sl = slice(start, start + EVAL_BATCH)
        out = _first_output(module(**_to_tensors(samples, names, sl)))
        target = labels[sl]
        total += float(fn(out, target)) * len(target)
        if classify and out.dim() == 2:
            correct += int((out.argmax(dim=1) == target).sum())
    top1 = correct / n if classify and n else None
    return {"loss": total / n if n else math.nan, "top1": top1}


def train(
    module: nn.Module,
    spec: TrainSpec,
    inputs: Sequence[InputSpec],
    log: logging.Logger,
    key: str = "train",
) -> dict[str, Any]:
    """Train ``module`` in place per ``spec`` (call inside :func:`deterministic`). The datasets must
    provide every input in ``inputs`` by name (the module is called with keyword arguments) and
    labels. Returns ``{train_loss, train_top1, val_loss, val_top1, epochs, seconds, trained}``."""
    from tqdm import tqdm

    from pipeline.train.common import final_metrics, load_labelled

    names = [s.name for s in inputs]
    data = load_labelled(spec.dataset, f"{key}.dataset", inputs)
    val = load_labelled(spec.val_dataset, f"{key}.val_dataset", inputs) if spec.val_dataset else None

    if spec.optimizer == "adam":
        opt = torch.optim.Adam(module.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    else:
        opt = torch.optim.SGD(module.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    loss_fn = _loss_fn(spec.loss)
    labels = torch.from_numpy(np.ascontiguousarray(data.labels))
    order = torch.Generator().manual_seed(spec.seed)
    n = len(data)
    steps = math.ceil(n / spec.batch_size)
    log.info(
        "training %d epochs on %d samples (%s, lr %g, batch %d, seed %d, %d threads)",
        spec.epochs, n, spec.optimizer, spec.lr, spec.batch_size, spec.seed, torch.get_num_threads(),
    )
    start = time.perf_counter()
    bar = tqdm(total=spec.epochs * steps, desc="train", unit="step", leave=False, mininterval=0.5)
    try:
        for epoch in range(1, spec.epochs + 1):
            module.train()
            perm = torch.randperm(n, generator=order).numpy()
            running = 0.0
            for step in range(steps):
                idx = perm[step * spec.batch_size : (step + 1) * spec.batch_size]
                out = _first_output(module(**_to_tensors(data, names, idx)))
                loss = loss_fn(out, labels[torch.from_numpy(idx)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                lv = loss.item()
                running += lv * len(idx)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{lv:.4f}", refresh=False)
            msg = f"epoch {epoch}/{spec.epochs}: train loss {running / n:.4f}"
            if val is not None:
                m = evaluate(module, val, names, spec.loss)
                msg += f", val loss {m['loss']:.4f}" + (f", val top1 {m['top1']:.4f}" if m["top1"] is not None else "")
            log.debug(msg)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    metrics = final_metrics(lambda d: evaluate(module, d, names, spec.loss), data, val, spec.epochs, seconds, log)
    module.eval()
    return metrics
