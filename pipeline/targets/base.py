"""What every ONNX Runtime target shares: session parameters, the availability check, building a session.

A target is an execution provider plus the session settings it runs with. Subclasses name the
provider and declare ``Params`` (a :class:`SessionParams` with a ``name: Literal[...]`` field).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from pipeline.errors import ConfigError
from pipeline.schema import Strict

OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
EXEC_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}


THREADS_PER_CORE = 4  # more threads than 4x the cores only oversubscribes (ORT's spinning threads stall)


def max_threads() -> int:
    """The thread limit of this host: 4x its logical cores."""
    return THREADS_PER_CORE * (os.cpu_count() or 1)


class SessionParams(Strict):
    """Session settings shared by all targets (``target: {name: cpu, threads: 1, ...}``)."""

    threads: int = Field(0, ge=0)  # intra-op threads; 0 = ONNX Runtime's default (one per physical core)
    inter_op_threads: int = Field(0, ge=0)  # only used with execution_mode: parallel
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"  # at load time
    provider_options: dict[str, Any] = Field(default_factory=dict)  # passed to the execution provider
    session_config: dict[str, str] = Field(default_factory=dict)  # SessionOptions.add_session_config_entry

    @field_validator("threads", "inter_op_threads")
    @classmethod
    def _bounded(cls, value: int) -> int:
        limit = max_threads()
        if value > limit:
            raise ValueError(
                f"{value} threads is more than {THREADS_PER_CORE}x this host's {os.cpu_count()} cores "
                f"({limit}): ONNX Runtime's spinning threads would oversubscribe the CPU and the "
                "evaluation would crawl for minutes; use 0 (one per physical core) or a count up to the cores"
            )
        return value


class Target:
    """An ONNX Runtime execution provider with session settings."""

    name: ClassVar[str]
    provider: ClassVar[str]  # e.g. "CPUExecutionProvider"
    Params: ClassVar[type[SessionParams]]

    # provider option names ONNX Runtime documents for this provider; None: not documented, not checked
    option_names: ClassVar[frozenset[str] | None] = frozenset()  # the CPU provider takes none
    package: ClassVar[str] = "onnxruntime"  # the PyPI package that ships the provider

    def check_options(self, params: SessionParams, key: str = "target", source: str | None = None) -> None:
        """Unknown ``provider_options`` are errors by name (ONNX Runtime would ignore them silently)."""
        if self.option_names is None:
            return
        for option in params.provider_options:
            if option not in self.option_names:
                what = "takes no provider options" if not self.option_names else "has no such option"
                raise ConfigError(
                    f"provider option '{option}': {self.provider} {what} (ONNX Runtime would ignore it)",
                    key=f"{key}.provider_options.{option}",
                    source=source,
                    choices=self.option_names or None,
                )

    def check_available(self, params: SessionParams, key: str = "target.name", source: str | None = None) -> None:
        """Raise ConfigError when this build of ONNX Runtime lacks the provider."""
        import onnxruntime

        available = onnxruntime.get_available_providers()
        if self.provider not in available:
            raise ConfigError(
                f"execution provider {self.provider} (target '{self.name}') is not installed in this "
                f"onnxruntime {onnxruntime.__version__}; installed providers: {', '.join(available)}; "
                f"it ships with {self.package}",
                key=key,
                source=source,
            )

    def session_options(self, params: SessionParams):
        import onnxruntime

        so = onnxruntime.SessionOptions()
        so.intra_op_num_threads = params.threads
        so.inter_op_num_threads = params.inter_op_threads
        so.execution_mode = getattr(onnxruntime.ExecutionMode, EXEC_MODES[params.execution_mode])
        so.graph_optimization_level = getattr(
            onnxruntime.GraphOptimizationLevel, OPT_LEVELS[params.graph_optimization_level]
        )
        so.log_severity_level = 3  # errors only: warnings about unused initializers etc. are noise here
        for k, v in params.session_config.items():
            so.add_session_config_entry(str(k), str(v))
        return so

    def providers(self, params: SessionParams) -> list[Any]:
        """Provider list for InferenceSession: this provider (with its options), then CPU as fallback."""
        chain: list[Any] = [(self.provider, dict(params.provider_options))]
        if self.provider != "CPUExecutionProvider":
            chain.append("CPUExecutionProvider")
        return chain

    def session(self, model_path: str | os.PathLike, params: SessionParams):
        """An InferenceSession for ``model_path`` (external data is found beside it)."""
        import onnxruntime

        self.check_available(params)
        return onnxruntime.InferenceSession(
            str(Path(model_path)), sess_options=self.session_options(params), providers=self.providers(params)
        )

    def describe(self, params: SessionParams) -> dict[str, Any]:
        """Settings recorded with every measurement (metrics ``environment.target``)."""
        return {
            "name": self.name,
            "provider": self.provider,
            "intra_op_threads": params.threads,
            "inter_op_threads": params.inter_op_threads,
            "execution_mode": params.execution_mode,
            "graph_optimization_level": params.graph_optimization_level,
            "provider_options": {str(k): v for k, v in sorted(params.provider_options.items())},
            "session_config": dict(sorted(params.session_config.items())),
        }
