"""Loading, saving and measuring ONNX files, external data included.

Every artifact is written with :func:`save_model` into a directory that the caller created with
``pipeline.fsutil.atomic_dir``, so a failure never leaves a half-written ``.onnx`` behind.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
# Tensors above this size go to external data; models above this total always do (protobuf's 2 GB cap).
_EXTERNAL_TOTAL = 1 << 30  # 1 GiB


def model_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / MODEL_FILE


def load_model(path: str | os.PathLike, load_external_data: bool = True):
    import onnx

    return onnx.load(str(path), load_external_data=load_external_data)


def tensor_bytes(model) -> int:
    total = 0
    for init in model.graph.initializer:
        total += len(init.raw_data) if init.raw_data else 0
        # non-raw storage (float_data etc.): approximate by element count * 4
        if not init.raw_data:
            n = 1
            for d in init.dims:
                n *= d
            total += n * 4
    return total


def save_model(model, path: str | os.PathLike, external_data: bool | None = None) -> Path:
    """Save ``model`` to ``path``; weights go to ``<name>.data`` beside it when the model is large
    (or when ``external_data`` is True). Returns the path.

    With external data, onnx moves the tensors of ``model`` itself to external references (their
    data then lives only in the file): reload the saved file to keep working with the weights.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data is None:
        external_data = tensor_bytes(model) > _EXTERNAL_TOTAL
    if external_data:
        location = path.name + ".data"
        stale = path.parent / location
        if stale.exists():
            stale.unlink()
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=location,
            size_threshold=1024,
            convert_attribute=False,
        )
    else:
        onnx.save_model(model, str(path))
    return path


def external_files(path: str | os.PathLike) -> list[Path]:
    """The external data files an ONNX file refers to (resolved beside it)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    files = []
    for tensor in _all_tensors(model):
        if uses_external_data(tensor):
            loc = ExternalDataInfo(tensor).location
            p = path.parent / loc
            if p not in files:
                files.append(p)
    return files


def _all_tensors(model):
    from onnx.external_data_helper import _get_all_tensors

    return _get_all_tensors(model)


def node_subgraphs(node) -> list[Any]:
    """The bodies a node carries (If branches, Loop / Scan bodies)."""
    return [sub for attr in node.attribute for sub in ([attr.g] if attr.HasField("g") else attr.graphs)]


def names_read(graph) -> set[str]:
    """Every tensor name a node of ``graph`` or of its subgraphs (If / Loop / Scan bodies) reads."""
    names: set[str] = set()
    for node in graph.node:
        names.update(node.input)
        for sub in node_subgraphs(node):
            names |= names_read(sub)
    return names


def kept_names(graph) -> set[str]:
    """Names a rewrite of ``graph``'s nodes must keep, value and all: its outputs and whatever a
    subgraph (If / Loop / Scan body) reads from the outer scope."""
    return {out.name for out in graph.output} | {
        name for node in graph.node for sub in node_subgraphs(node) for name in names_read(sub)}


def fresh_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``, ... the first not in ``taken`` (which then holds it): names
    for the nodes and tensors a rewrite adds."""
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def model_size_mb(path: str | os.PathLike) -> float:
    """Size of the ONNX file plus its external data, in MB (10^6 bytes)."""
    path = Path(path)
    total = path.stat().st_size + sum(p.stat().st_size for p in external_files(path) if p.exists())
    return total / 1e6


def graph_stats(model) -> dict[str, Any]:
    """Node count (including subgraphs), op histogram and opsets of a loaded model."""
    ops: Counter[str] = Counter()

    def walk(graph) -> None:
        for node in graph.node:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            ops[key] += 1
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return {
        "num_nodes": sum(ops.values()),
        "ops": dict(sorted(ops.items())),
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
    }


def file_stats(path: str | os.PathLike) -> dict[str, Any]:
    """graph_stats of a file without loading its external data."""
    return graph_stats(load_model(path, load_external_data=False))
