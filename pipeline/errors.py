"""User-facing errors: one clear line each, naming the file, the key and the valid choices."""

from __future__ import annotations

from collections.abc import Iterable


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none."""
    text = str(exc).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``: the cause part of a one-line StageError."""
    first = first_line(exc)
    return f"{type(exc).__name__}: {first}" if first != type(exc).__name__ else first


class PipelineError(Exception):
    """An error the user can act on. ``str(err)`` is one line; details go to the log file."""


class ConfigError(PipelineError):
    """A recipe/params error: names where (file), which key, what is wrong and the valid choices."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        source: str | None = None,
        choices: Iterable[str] | None = None,
    ) -> None:
        self.key = key
        self.source = source
        self.choices = sorted(choices) if choices is not None else None
        self.reason = message
        parts = []
        if source:
            parts.append(source)
        if key:
            parts.append(f"key '{key}'")
        head = ", ".join(parts)
        text = f"{head}: {message}" if head else message
        if self.choices is not None:
            text += f" (valid choices: {', '.join(self.choices)})" if self.choices else " (there are no valid choices yet)"
        super().__init__(text)


class StageError(PipelineError):
    """A stage failed (export, pass, quantization, evaluation): names the stage, the step and the cause."""

    def __init__(self, stage: str, step: str | None, cause: str, log_file: str | None = None) -> None:
        self.stage = stage
        self.step = step
        self.cause = cause
        self.log_file = log_file
        where = f"{stage} stage" + (f", {step}" if step else "")
        text = f"{where} failed: {cause}"
        if log_file:
            text += f" (full log: {log_file})"
        super().__init__(text)
