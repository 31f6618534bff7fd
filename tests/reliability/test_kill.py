"""SIGKILL `dvc repro` at >= 20 random offsets: 0 corrupt artifacts, every kill recovered by a plain
`dvc repro` with a clean `dvc status`, the same dvc.lock hashes as a clean build, no stage left
running after its `dvc` died."""

from __future__ import annotations

import random

import pytest

from tests.reliability.kill import kill_trials
from tests.reliability.tiny import make_dvc_project


@pytest.mark.slow
def test_random_kills_of_dvc_repro_lose_and_corrupt_nothing(tmp_path, bench_lock):
    root = make_dvc_project(tmp_path / "proj")
    seen: list[str] = []
    figures = kill_trials(root, 20, random.Random(20261130), seen)
    report = (figures, seen)
    assert figures["kills"] == 20
    assert figures.get("stage outlived dvc", 0) == 0, report
    assert figures.get("corrupt", 0) == 0, report
    assert figures.get("lost", 0) == 0, report
    assert figures.get("dvc status dirty", 0) == 0, report
    assert figures["recovered"] == 20, report
