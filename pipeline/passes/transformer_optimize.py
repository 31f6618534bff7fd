"""ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer.optimize_model``).

Fuses a transformer's subgraphs into ``com.microsoft`` ops: EmbedLayerNormalization, Attention (or
MultiHeadAttention), SkipLayerNormalization, BiasGelu / FastGelu / Gelu, LayerNormalization.
Only offline, hardware-independent work is done (``opt_level`` 0: the Python fusions alone; 1: also
ONNX Runtime's basic level first; ``use_gpu`` False), so the artifact stays portable.

``num_heads`` / ``hidden_size`` 0 means: read them from the graph (:mod:`pipeline.passes.attention_heads`:
the Q/K/V projections and their head Reshapes); ONNX Runtime's own detection fails on TorchScript
exports of transformers models, whose head Reshape is ``[batch, seq, -1, head_size]``. When the graph
has attention and neither can tell, the pass stops and asks for them.

passes.json records the fused op counts before and after and the fusions applied. When attention
stays unfused (Softmax between Q x K^T and x V remains), a warning and a ``note`` say why it is likely:
measured here, attention fuses only when the transformers model runs with ``attn_implementation=
"eager"`` and is exported with the TorchScript exporter. A model with no fusable pattern (not a
transformer) passes through unchanged ("fusions applied: none"). Run it on the export, before
onnxoptimizer: that one's ``eliminate_consecutive_idempotent_ops`` rewrites the attention subgraph
so that it no longer fuses (measured on all-MiniLM-L6-v2; ONNX Runtime's basic level does not).

The fused BERT graph takes the attention mask as right-padded (EmbedLayerNormalization turns it
into per-sample lengths, ``attention_mask_format`` 0); left-padded inputs need ``options:
{attention_mask_format: 3}`` (the raw 2D mask).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from pipeline.errors import ConfigError
from pipeline.passes.base import Pass, PassContext, copy_model, save_like
from pipeline.schema import Strict

ATTENTION_OPS = ("Attention", "MultiHeadAttention")
UNFUSED_ATTENTION_NOTE = (
    "attention did not fuse ({softmax} attention Softmax left): most likely the model was exported with "
    "SDPA attention or with the dynamo exporter (export it with factory attn_implementation: eager and "
    "export.exporter: torchscript), or an earlier pass rewrote the attention subgraph (onnxoptimizer's "
    "eliminate_consecutive_idempotent_ops does: run transformer_optimize first, as passes: transformer does)"
)
DECLARE_HEADS = (
    "cannot detect num_heads and hidden_size from the graph ({softmax} attention Softmax, no head "
    "Reshape found): declare them in this pass's params (num_heads, hidden_size)"
)


def model_types() -> list[str]:
    """The model types ONNX Runtime's transformer optimizer knows (its ``MODEL_TYPES``)."""
    from onnxruntime.transformers.optimizer import MODEL_TYPES

    return sorted(MODEL_TYPES)


def fusion_option_defaults(model_type: str) -> dict[str, Any]:
    """The optimizer's fusion options for ``model_type`` with their defaults (bool / int ones)."""
    from onnxruntime.transformers.fusion_options import FusionOptions

    return {
        k: (int(v) if not isinstance(v, bool) else v)
        for k, v in vars(FusionOptions(model_type)).items()
        if isinstance(v, (bool, int))
    }


LAYER_NORM_OPSET = 17  # ONNX LayerNormalization (what the LayerNorm fusion writes) exists from opset 17


def add_missing_opsets(model) -> list[str]:
    """Import every domain the nodes use (the optimizer writes com.microsoft ops without importing
    the domain: ONNX Runtime accepts that, ``onnx.checker`` does not). Returns the domains added."""
    from onnx import helper

    imported = {o.domain or "ai.onnx" for o in model.opset_import}
    added = sorted({n.domain for n in model.graph.node if n.domain and n.domain not in imported})
    model.opset_import.extend(helper.make_opsetid(domain, 1) for domain in added)
    return added


class TransformerOptimize(Pass):
    name = "transformer_optimize"

    class Params(Strict):
        model_type: str = "bert"
        num_heads: int = Field(0, ge=0)  # 0: detect from the graph
        hidden_size: int = Field(0, ge=0)  # 0: detect from the graph
        opt_level: Literal[0, 1] = 0  # 1: ONNX Runtime's basic (portable) level before the fusions
        options: dict[str, bool | int] = Field(default_factory=dict)  # FusionOptions, e.g. enable_gelu_approximation

        @field_validator("model_type")
        @classmethod
        def _model_type(cls, value: str) -> str:
            valid = model_types()
            if value not in valid:
                raise ValueError(f"unknown model_type '{value}' (valid choices: {', '.join(valid)})")
            return value

        @field_validator("options")
        @classmethod
        def _options(cls, value: dict[str, bool | int], info) -> dict[str, bool | int]:
            defaults = fusion_option_defaults(info.data.get("model_type", "bert"))
            for key, given in value.items():
                if key not in defaults:
                    raise ValueError(f"unknown fusion option '{key}' (valid choices: {', '.join(sorted(defaults))})")
                if isinstance(defaults[key], bool) != isinstance(given, bool):
                    kind = "true/false" if isinstance(defaults[key], bool) else "an integer"
                    raise ValueError(f"fusion option '{key}' takes {kind}, got {given!r}")
            return value

    def run(self, src: Path, dst: Path, params: Params, ctx: PassContext) -> dict[str, Any]:
        import onnx
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        from pipeline.passes.attention_heads import attention_softmaxes

        source = onnx.load(str(src))
        softmax = attention_softmaxes(source)
        num_heads, hidden_size, heads_from = self._heads(source, params, ctx)
        options = FusionOptions(params.model_type)
        for key, value in params.options.items():
            setattr(options, key, value)
        opset = next((o.version for o in source.opset_import if o.domain in ("", "ai.onnx")), 0)
        layer_norm_note = None
        if opset < LAYER_NORM_OPSET and options.enable_layer_norm and "enable_layer_norm" not in params.options:
            # the fusion writes ONNX LayerNormalization, which exists from opset 17 only
            options.enable_layer_norm = False
            layer_norm_note = (
                f"LayerNormalization fusion skipped: the model is at opset {opset} and ONNX LayerNormalization "
                f"needs opset {LAYER_NORM_OPSET} (add an `opset` pass with version {LAYER_NORM_OPSET} first to fuse it)"
            )
            ctx.log.info("transformer_optimize: %s", layer_norm_note)
        with _optimizer_log(ctx.log):
            optimizer = optimize_model(
                str(src),
                model_type=params.model_type,
                num_heads=num_heads,
                hidden_size=hidden_size,
                optimization_options=options,
                opt_level=params.opt_level,
                use_gpu=False,
            )
            stats = {k: int(v) for k, v in optimizer.get_fused_operator_statistics().items()}
        before = Counter(n.op_type for n in source.graph.node)
        after = Counter(n.op_type for n in optimizer.model.graph.node)
        fused_ops = {op: {"before": before.get(op, 0), "after": after.get(op, 0)} for op in sorted(stats)}
        applied = {op: c["after"] - c["before"] for op, c in fused_ops.items() if c["after"] > c["before"]}
        attention = sum(after.get(op, 0) for op in ATTENTION_OPS)
        info: dict[str, Any] = {
            "model_type": params.model_type,
            "num_heads": num_heads,
            "hidden_size": hidden_size,
            "heads_from": heads_from,
            "opt_level": params.opt_level,
            "options": dict(params.options),
            "fused_ops": {op: c for op, c in fused_ops.items() if c["before"] or c["after"]},
            "fusions_applied": applied or "none",
            "attention_fused": attention,
            "attention_softmax_before": softmax,
        }
        if layer_norm_note:
            info["layer_norm"] = layer_norm_note
        if softmax and not attention:
            if heads_from == "none":
                raise ConfigError(DECLARE_HEADS.format(softmax=softmax), key="params.num_heads")
            info["note"] = UNFUSED_ATTENTION_NOTE.format(softmax=softmax)
            ctx.log.warning("transformer_optimize: %s", info["note"])
        if not applied:
            ctx.log.info("transformer_optimize: fusions applied: none (model left unchanged)")
            copy_model(src, dst)
            return info
        ctx.log.info(
            "transformer_optimize: fusions applied: %s", ", ".join(f"{op} x{n}" for op, n in applied.items())
        )
        add_missing_opsets(optimizer.model)
        save_like(optimizer.model, dst, src)
        return info

    @staticmethod
    def _heads(model, params: Params, ctx: PassContext) -> tuple[int, int, str]:
        """``(num_heads, hidden_size, where from)``: declared, read from the graph, or left to ONNX
        Runtime's own detection (``"none"``: 0, 0)."""
        from pipeline.passes.attention_heads import detect_heads

        if params.num_heads and params.hidden_size:
            return params.num_heads, params.hidden_size, "declared"
        found = detect_heads(model)
        if found is None:
            return params.num_heads, params.hidden_size, "none"
        if found.candidates:
            ctx.log.warning("transformer_optimize: projections disagree on heads x hidden: %s", found.candidates)
        heads = params.num_heads or found.num_heads
        hidden = params.hidden_size or found.hidden_size
        ctx.log.info("transformer_optimize: num_heads %d, hidden_size %d (%d projections)", heads, hidden, found.votes)
        return heads, hidden, "declared+graph" if (params.num_heads or params.hidden_size) else "graph"


def _optimizer_loggers() -> list[logging.Logger]:
    """The loggers of the optimizer's modules. ONNX Runtime puts its transformers folder on sys.path,
    so most of them log under bare module names (fusion_attention, onnx_model_bert, ...)."""
    import sys

    import onnxruntime.transformers as package

    folder = Path(package.__file__).resolve().parent
    names = {"onnxruntime.transformers"}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().parent == folder:
            names.add(name)
    return [logging.getLogger(n) for n in sorted(names)]


@contextlib.contextmanager
def _optimizer_log(log: logging.Logger) -> Iterator[None]:
    """The optimizer logs every fusion attempt and warnings such as 'Failed to detect num_heads'
    (which this pass answers itself): send them to the stage log at debug level, not the console."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.DEBUG)
    saved = [(lg, lg.propagate, list(lg.handlers)) for lg in _optimizer_loggers()]
    for lg, _, _ in saved:
        lg.handlers = [handler]
        lg.propagate = False
    try:
        yield
    finally:
        for lg, propagate, handlers in saved:
            lg.propagate, lg.handlers = propagate, handlers
        for record in records:
            log.debug("optimizer %s: %s", record.levelname.lower(), record.getMessage())
