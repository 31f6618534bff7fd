"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest


@pytest.fixture
def bench_lock(tmp_path, monkeypatch):
    """Keep test measurements off the host-wide benchmark lock of real runs."""
    path = tmp_path / "bench.lock"
    monkeypatch.setenv("ONNXBUILD_BENCH_LOCK", str(path))
    return path
