"""The CPU this runs on: model name and the ISA flags that decide int8 kernels (recorded with every result)."""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

# flag in /proc/cpuinfo (or py-cpuinfo) -> name we report
_ISA = {
    "avx2": "avx2",
    "avx512f": "avx512",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_tile": "amx",
    "amx_int8": "amx_int8",
    "asimd": "neon",
    "asimddp": "neon_dotprod",
    "i8mm": "i8mm",
    "sve": "sve",
}


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """``{"model": str, "arch": str, "cores": int, "isa": {avx2, avx512, vnni, amx, ...: bool}}``."""
    model, flags = _from_proc()
    if model is None:
        try:  # other OSes: py-cpuinfo (slower, spawns a helper)
            import cpuinfo

            info = cpuinfo.get_cpu_info()
            model, flags = info.get("brand_raw"), set(info.get("flags", []))
        except Exception:  # pragma: no cover - best effort on exotic platforms
            model, flags = platform.processor() or "unknown", set()
    isa = {name: (flag in flags) for flag, name in _ISA.items()}
    isa["vnni"] = isa["avx512_vnni"] or isa["avx_vnni"]
    return {
        "model": model or "unknown",
        "arch": platform.machine(),
        "cores": os.cpu_count() or 1,
        "isa": dict(sorted(isa.items())),
    }


def _from_proc() -> tuple[str | None, set[str]]:
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
