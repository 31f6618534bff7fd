"""``search.json``: the record of an ``auto`` build's search, and its summary in the build's metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEARCH_FILE = "search.json"
# per candidate, what the metrics JSON keeps (search.json keeps everything)
SUMMARY_KEYS = ("name", "settings", "status", "excluded_nodes")
FINAL_KEYS = ("speedup", "interval", "p50_ms", "gates_passed", "failures", "fidelity")


def load(artifact_dir: Path) -> dict[str, Any] | None:
    path = Path(artifact_dir) / SEARCH_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def summary(artifact_dir: Path) -> dict[str, Any] | None:
    """The chosen candidate, why, the search's verdict and each candidate's final numbers; None
    when the folder holds no search."""
    record = load(artifact_dir)
    if record is None:
        return None
    rows = []
    for cand in record.get("candidates", []):
        row = {k: cand[k] for k in SUMMARY_KEYS if k in cand}
        stage = cand.get("final") or cand.get("screen")
        if stage:
            row["measured_in"] = "final" if cand.get("final") else "screen"
            row.update({k: stage[k] for k in FINAL_KEYS if k in stage})
        rows.append(row)
    choice = record.get("choice", {})
    return {
        "chosen": choice.get("chosen"),
        "reason": choice.get("reason"),
        "verdict": choice.get("verdict"),
        "candidates": rows,
        "mixed_precision": record.get("mixed_precision", []),
    }
