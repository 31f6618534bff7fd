"""Targets for ONNX Runtime's other execution providers.

They share the cpu target's session parameters; ``provider_options`` go to the provider (for
example ``{device_id: 0}`` for CUDA, ``{device_type: CPU}`` for OpenVINO). They work only with an
onnxruntime build that ships the provider; otherwise ``check_available`` names what is installed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import create_model

from pipeline.targets.base import SessionParams, Target

# target name -> ONNX Runtime execution provider
PROVIDERS: dict[str, str] = {
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
}


def accelerator_target(name: str, provider: str) -> type[Target]:
    """A Target class for ``provider`` whose Params are the shared session params with ``name: <name>``."""
    title = name.capitalize()
    params = create_model(f"{title}Params", __base__=SessionParams, name=(Literal[name], name))  # type: ignore[valid-type]
    return type(f"{title}Target", (Target,), {"name": name, "provider": provider, "Params": params})


ACCELERATORS: dict[str, type[Target]] = {name: accelerator_target(name, ep) for name, ep in PROVIDERS.items()}
