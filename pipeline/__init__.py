"""onnxbuild: a declarative build system for ONNX models (Hydra recipes -> DVC stages)."""

__version__ = "0.1.0"
