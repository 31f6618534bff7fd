"""The ONNX Runtime session settings a build was measured with, as data (``session.json``).

Read back from the very ``SessionOptions`` and provider list the build's target makes for the evaluate
stage (:meth:`pipeline.targets.base.Target.session_options`, :meth:`~pipeline.targets.base.Target.providers`),
so the package runs the model exactly as it was measured. Enum values are ONNX Runtime's own names
(``ORT_ENABLE_ALL``), so ``infer.py`` maps them back with ``getattr`` and needs nothing of this project.
"""

from __future__ import annotations

from typing import Any

THREADS_NOTE = "0 = ONNX Runtime's default (intra-op: one thread per physical core)"


def _provider(entry: Any) -> dict[str, Any]:
    if isinstance(entry, (tuple, list)):
        name, options = entry
        return {"name": str(name), "options": {str(k): v for k, v in dict(options).items()}}
    return {"name": str(entry), "options": {}}


def session_settings(target: Any, params: Any, model_file: str) -> dict[str, Any]:
    """``session.json`` for ``target`` (a :class:`~pipeline.targets.base.Target`) with ``params`` (its
    validated :class:`~pipeline.targets.base.SessionParams`); ``model_file``: the model's path in the package."""
    import onnxruntime

    so = target.session_options(params)
    return {
        "model": model_file,
        "target": target.name,
        "provider": target.provider,
        "providers": [_provider(p) for p in target.providers(params)],
        "intra_op_num_threads": so.intra_op_num_threads,
        "inter_op_num_threads": so.inter_op_num_threads,
        "threads_note": THREADS_NOTE,
        "execution_mode": so.execution_mode.name,
        "graph_optimization_level": so.graph_optimization_level.name,
        "log_severity_level": so.log_severity_level,
        "session_config": {str(k): so.get_session_config_entry(str(k)) for k in sorted(params.session_config)},
        "onnxruntime": onnxruntime.__version__,
    }


__all__ = ["THREADS_NOTE", "session_settings"]
