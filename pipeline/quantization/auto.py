"""Quantizer ``auto``: search among candidate builds and ship the one the measurements choose.

The candidates (graph variants, dynamic / static int8, per-channel / per-tensor, calibration
methods, op types, and mixed-precision steps for candidates that fail the fidelity gates) are
declared by ``space`` and measured with the build's own target and gates against the fp32 export;
see :mod:`pipeline.search.run`. The chosen model becomes the artifact, ``search.json`` beside it
records every candidate, its numbers and why the chosen one won.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipeline.quantization.base import QuantContext, Quantizer
from pipeline.schema import Strict
from pipeline.search.space import CalibrationData, Final, MixedPrecision, Screen, Space


class AutoQuantization(Quantizer):
    name = "auto"

    class Params(Strict):
        name: Literal["auto"] = "auto"
        space: Space = Field(default_factory=Space)
        calibration: CalibrationData = Field(default_factory=CalibrationData)
        mixed_precision: MixedPrecision = Field(default_factory=MixedPrecision)
        screen: Screen = Field(default_factory=Screen)
        final: Final = Field(default_factory=Final)
        preprocess: bool = True  # onnxruntime's quant_pre_process before quantizing (once per graph variant)

    def run(self, src: Path, dst: Path, params: Params, ctx: QuantContext) -> dict[str, Any]:
        from pipeline.search.run import run_search

        return run_search(src, dst, params, ctx)
