"""Targets for ONNX Runtime's other execution providers.

They share the cpu target's session parameters; ``provider_options`` go to the provider (for
example ``{device_id: 0}`` for CUDA, ``{device_type: CPU}`` for OpenVINO). They work only with an
onnxruntime build that ships the provider; otherwise ``check_available`` names what is installed.
"""

from __future__ import annotations

from typing import Literal

from pipeline.targets.base import SessionParams, Target


class CudaParams(SessionParams):
    name: Literal["cuda"] = "cuda"


class CudaTarget(Target):
    name = "cuda"
    provider = "CUDAExecutionProvider"
    Params = CudaParams


class TensorrtParams(SessionParams):
    name: Literal["tensorrt"] = "tensorrt"


class TensorrtTarget(Target):
    name = "tensorrt"
    provider = "TensorrtExecutionProvider"
    Params = TensorrtParams


class RocmParams(SessionParams):
    name: Literal["rocm"] = "rocm"


class RocmTarget(Target):
    name = "rocm"
    provider = "ROCMExecutionProvider"
    Params = RocmParams


class OpenvinoParams(SessionParams):
    name: Literal["openvino"] = "openvino"


class OpenvinoTarget(Target):
    name = "openvino"
    provider = "OpenVINOExecutionProvider"
    Params = OpenvinoParams


class DnnlParams(SessionParams):
    name: Literal["dnnl"] = "dnnl"


class DnnlTarget(Target):
    name = "dnnl"
    provider = "DnnlExecutionProvider"
    Params = DnnlParams


class XnnpackParams(SessionParams):
    name: Literal["xnnpack"] = "xnnpack"


class XnnpackTarget(Target):
    name = "xnnpack"
    provider = "XnnpackExecutionProvider"
    Params = XnnpackParams


class CoremlParams(SessionParams):
    name: Literal["coreml"] = "coreml"


class CoremlTarget(Target):
    name = "coreml"
    provider = "CoreMLExecutionProvider"
    Params = CoremlParams


class QnnParams(SessionParams):
    name: Literal["qnn"] = "qnn"


class QnnTarget(Target):
    name = "qnn"
    provider = "QNNExecutionProvider"
    Params = QnnParams
