"""Every stage in dvc.yaml depends on all the project code its entry point can run (derived from the
source by pipeline.codedeps, not kept by hand): an edit to any of it reruns the stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.codedeps import closure

ROOT = Path(__file__).resolve().parents[2]


def _stages() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_depends_on_all_code_it_runs(name):
    stage = _stages()[name]
    argv = stage["cmd"].split()
    module = argv[argv.index("-m") + 1]
    deps = [d for d in stage["deps"] if "${" not in d]
    missing = sorted(str(p) for p in closure(ROOT, module) if not _covered(str(p), deps))
    assert not missing, f"stage {name} runs {missing} but does not depend on it"
