"""Shared plumbing of graph passes: the pass contract, change detection, validation, the pass manager.

A pass reads the ONNX file at ``src`` and writes one at ``dst``. The manager runs an ordered list of
passes, each into its own step folder of a temporary directory, records what each did
(``nodes_before``, ``nodes_after``, ``changed``, ``seconds``, ``info``; ``seconds`` is logged, not written to passes.json), checks every result with
``onnx.checker`` (path based, so external data is checked too) and, on failure, raises a
:class:`~pipeline.errors.StageError` naming the pass and the passes that already ran.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pipeline.errors import ConfigError, PipelineError, StageError, first_line, one_line
from pipeline.onnx_utils import MODEL_FILE, external_files, graph_stats, save_model
from pipeline.schema import Strict

STAGE = "passes"


@dataclass
class PassContext:
    """What a pass may need besides its params: a logger, a scratch folder, values for symbolic dims."""

    log: logging.Logger
    work_dir: Path
    dims: dict[str, int] = field(default_factory=lambda: {"batch": 1})


class Pass(abc.ABC):
    """A graph pass. Subclasses set ``name`` and ``Params`` and implement :meth:`run`."""

    name: ClassVar[str]
    Params: ClassVar[type[Strict]]

    @abc.abstractmethod
    def run(self, src: Path, dst: Path, params: Any, ctx: PassContext) -> dict[str, Any]:
        """Read ``src``, write ``dst``; return info for passes.json."""


# ---------------------------------------------------------------------------------------------
# Helpers for pass implementations
# ---------------------------------------------------------------------------------------------


def uses_external_data(path: str | Path) -> bool:
    return bool(external_files(path))


def save_like(model, dst: Path, src: Path) -> Path:
    """Save ``model`` at ``dst``, keeping weights in external data when ``src`` had them."""
    return save_model(model, dst, external_data=True if uses_external_data(src) else None)


def copy_model(src: Path, dst: Path) -> Path:
    """Copy an ONNX file and the external data files it refers to (same relative names)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    for data in external_files(src):
        rel = data.relative_to(src.parent)
        (dst.parent / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data, dst.parent / rel)
    return dst


def check_model(path: Path) -> None:
    """onnx.checker on the file (path based: external data and >2 GB models are checked too)."""
    import onnx

    onnx.checker.check_model(str(path))


def signature(path: Path) -> dict[str, Any]:
    """What decides ``changed``: node count, op histogram, opsets, the wiring of the nodes, the
    initializers' contents and the number of shape annotations (value_info)."""
    from onnx import numpy_helper

    from pipeline.onnx_utils import load_model

    model = load_model(path)
    stats = graph_stats(model)
    wiring = hashlib.blake2b(digest_size=16)
    for node in model.graph.node:
        wiring.update(node.op_type.encode() + b"|" + node.domain.encode())
        wiring.update(("|".join(node.input) + ">" + "|".join(node.output)).encode())
        for attr in node.attribute:
            wiring.update(attr.SerializeToString())
    weights = hashlib.blake2b(digest_size=16)
    for init in sorted(model.graph.initializer, key=lambda t: t.name):
        weights.update(init.name.encode() + str(init.data_type).encode() + str(list(init.dims)).encode())
        weights.update(numpy_helper.to_array(init).tobytes())
    return {
        "num_nodes": stats["num_nodes"],
        "ops": stats["ops"],
        "opsets": stats["opsets"],
        "wiring": wiring.hexdigest(),
        "weights": weights.hexdigest(),
        "value_info": len(model.graph.value_info),
    }


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The aspects that differ between two signatures (empty: the pass did not change the model)."""
    return [key for key in ("num_nodes", "ops", "opsets", "wiring", "weights", "value_info") if before[key] != after[key]]


# ---------------------------------------------------------------------------------------------
# The pass manager
# ---------------------------------------------------------------------------------------------


def _short(exc: BaseException) -> str:
    return first_line(exc) if isinstance(exc, PipelineError) else one_line(exc)


def run_pass_list(
    src: Path,
    dst: Path,
    entries: Sequence[tuple[str, Any]],
    ctx: PassContext,
    registry: Mapping[str, type[Pass]] | None = None,
) -> dict[str, Any]:
    """Run ``entries`` (``(name, params)`` pairs, params already validated) on ``src``; write ``dst``.

    Returns ``{"passes": [record, ...], "totals": {...}}``. ``dst`` is written only when all passes
    succeed (inside the caller's atomic directory).
    """
    if registry is None:
        from pipeline.passes import PASSES

        registry = PASSES
    src, dst = Path(src), Path(dst)
    total = len(entries)
    records: list[dict[str, Any]] = []
    start_all = time.perf_counter()
    first = signature(src)
    with tempfile.TemporaryDirectory(prefix="onnxbuild-passes-") as tmp:
        current = src
        before = first
        for i, (name, params) in enumerate(entries, start=1):
            step = f"{name} (pass {i} of {total})"
            ran = ", ".join(r["name"] for r in records) or "none"
            out = Path(tmp) / f"{i:02d}-{name}" / MODEL_FILE
            out.parent.mkdir(parents=True)
            work = Path(tmp) / f"{i:02d}-{name}-work"
            work.mkdir()
            ctx_i = PassContext(log=ctx.log, work_dir=work, dims=ctx.dims)
            ctx.log.info("pass %d/%d: %s %s", i, total, name, _params_dict(params))
            if name not in registry:
                raise ConfigError(f"unknown pass '{name}'", key=f"passes[{i - 1}].name", choices=registry)
            impl = registry[name]()
            t0 = time.perf_counter()
            try:
                info = impl.run(current, out, params, ctx_i) or {}
                if not out.exists():
                    raise RuntimeError(f"pass wrote no model at {out.name}")
                check_model(out)
                after = signature(out)
            except ConfigError:
                raise
            except Exception as exc:
                ctx.log.debug("pass %s failed", name, exc_info=True)
                raise StageError(STAGE, step, f"{_short(exc)} [passes already run: {ran}]") from exc
            seconds = time.perf_counter() - t0
            diff = changes(before, after)
            records.append(
                {
                    "name": name,
                    "params": _params_dict(params),
                    "nodes_before": before["num_nodes"],
                    "nodes_after": after["num_nodes"],
                    "changed": bool(diff),
                    "changes": diff,
                    "seconds": round(seconds, 4),
                    "info": info,
                }
            )
            ctx.log.info(
                "  %s: %d -> %d nodes, %s (%.2fs)",
                name,
                before["num_nodes"],
                after["num_nodes"],
                "changed " + ", ".join(diff) if diff else "unchanged",
                seconds,
            )
            shutil.rmtree(work, ignore_errors=True)
            current, before = out, after
        if current == src:
            check_model(src)
        copy_model(current, dst)
    last = before
    return {
        "passes": records,
        "totals": {
            "num_passes": total,
            "num_changed": sum(1 for r in records if r["changed"]),
            "nodes_before": first["num_nodes"],
            "nodes_after": last["num_nodes"],
            "ops_before": first["ops"],
            "ops_after": last["ops"],
            "opsets_after": last["opsets"],
            "seconds": round(time.perf_counter() - start_all, 4),
        },
    }


def _params_dict(params: Any) -> dict[str, Any]:
    if hasattr(params, "model_dump"):
        return params.model_dump(mode="json")
    return dict(params or {})
