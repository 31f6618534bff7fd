"""Quantizers, resolved by name from an explicit registry (``QUANTIZERS``).

A recipe selects one flat: ``quantization: {name: static_int8, per_channel: true, ...}``; each
quantizer's ``Params`` has a ``name: Literal[...]`` field. onnxruntime.quantization is imported
only inside ``run``.
"""

from __future__ import annotations

from pipeline.quantization.auto import AutoQuantization
from pipeline.quantization.base import QuantContext, Quantizer
from pipeline.quantization.dynamic import DynamicInt8
from pipeline.quantization.none import NoQuantization
from pipeline.quantization.static import StaticInt8
from pipeline.registry import Registry

QUANTIZERS: Registry[type[Quantizer]] = Registry(
    "quantizer", {cls.name: cls for cls in (NoQuantization, DynamicInt8, StaticInt8, AutoQuantization)}
)

__all__ = ["QUANTIZERS", "QuantContext", "Quantizer"]
