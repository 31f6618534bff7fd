"""No quantization: the passes' output becomes the final artifact unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pipeline.passes.base import copy_model
from pipeline.quantization.base import QuantContext, Quantizer
from pipeline.schema import Strict


class NoQuantization(Quantizer):
    name = "none"

    class Params(Strict):
        name: Literal["none"] = "none"

    def run(self, src: Path, dst: Path, params: Params, ctx: QuantContext) -> dict[str, Any]:
        copy_model(src, dst)
        return {"calibration_samples": 0}
