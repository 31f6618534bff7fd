"""What a measurement ran on: the host, library versions, CPU model and ISA flags, target settings.

No timestamps: a metrics file changes only when a measurement does. The host id (hostname, CPU model,
core count) is the same on every run on one machine, so it changes no DVC hash by itself. Framework
versions are read from package metadata, so recording them never imports torch or TensorFlow.
"""

from __future__ import annotations

import json
import platform
import socket
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.hardware import cpu_info

PACKAGES = ("onnxruntime", "onnx", "numpy", "torch", "tensorflow-cpu", "tensorflow")


def package_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a result (absent ones are left out)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def host() -> dict[str, Any]:
    """The machine a measurement runs on: ``{"id", "hostname", "cpu", "cores"}``.

    ``id`` joins the three (``"vm (Intel(R) Xeon(R) Processor, 2 cores)"``): the report compares it
    with the current host's to say when numbers come from another machine. Nothing in it changes
    between runs on one machine (no boot id, no load, no time)."""
    cpu = cpu_info()
    name = socket.gethostname() or platform.node() or "unknown-host"
    return {
        "id": f"{name} ({cpu['model']}, {cpu['cores']} cores)",
        "hostname": name,
        "cpu": cpu["model"],
        "cores": cpu["cores"],
    }


def target_specific(artifact_dir: str | Path) -> Any:
    """The artifact's ``target_specific`` flag from ``<build>/passes/passes.json`` (None when absent).

    True when a pass (e.g. ORT offline optimization above basic) tied the graph to one target.
    """
    path = Path(artifact_dir).parent / "passes" / "passes.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if "target_specific" in data:
        return data["target_specific"]
    entries = data.get("passes")
    if not isinstance(entries, list):
        return None
    # one record per pass; the flag sits in the record or in its "info" (what the pass returned)
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        info = entry.get("info") if isinstance(entry.get("info"), dict) else {}
        if entry.get("target_specific") or info.get("target_specific"):
            return True
    return False


def environment(target_info: dict[str, Any], build_name: str | None, artifact_dir: str | Path) -> dict[str, Any]:
    cpu = cpu_info()
    env: dict[str, Any] = {
        "build": build_name,
        "host": host(),
        "versions": package_versions(),
        "python": platform.python_version(),
        "cpu": {"model": cpu["model"], "arch": cpu["arch"], "cores": cpu["cores"]},
        "isa": cpu["isa"],
        "target": target_info,
        "execution_provider": target_info.get("provider"),
        "threads": {
            "intra_op": target_info.get("intra_op_threads"),
            "inter_op": target_info.get("inter_op_threads"),
        },
    }
    flag = target_specific(artifact_dir)
    if flag is not None:
        env["target_specific"] = flag
    return env
