"""Sharing built artifacts through a DVC remote (a local folder here; S3/SSH/GCS the same way, see the
README): build, `dvc push --run-cache`, then a second clone runs `dvc pull --run-cache && dvc repro`
and no stage runs, with the same artifacts. A push to a remote that cannot be reached fails with
DVC's message and deletes nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.sweep_project import env, make_project

pytestmark = pytest.mark.slow
CONFIG = """\
defaults:
  - model@models.tiny_mlp: tiny_mlp
  - recipe@builds.mlp_fp32: mlp_fp32
  - _self_
"""


def _run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    e = {**env(cwd), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
         "GIT_COMMITTER_EMAIL": "t@example.com", "ONNXBUILD_LOG_DIR": str(cwd / "logs")}
    proc = subprocess.run(list(cmd), cwd=cwd, env=e, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, f"{cmd}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(cwd, sys.executable, "-m", "dvc", *args, check=check)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "artifacts").rglob("*")) if p.is_file()}


def test_second_clone_pulls_from_the_remote_and_rebuilds_nothing(tmp_path):
    first = make_project(tmp_path / "first", framework=True)
    (first / "conf" / "config.yaml").write_text(CONFIG)
    remote = tmp_path / "remote"
    _run(first, "git", "init", "-q")
    _dvc(first, "init", "-q")
    _dvc(first, "remote", "add", "-d", "shared", str(remote))  # README: s3://bucket/path, ssh://host/path, gs://...
    _run(first, sys.executable, "-m", "pipeline.cli", "compose")
    built = _dvc(first, "repro")
    assert "Running stage 'export@tiny_mlp'" in built.stdout
    _run(first, "git", "add", "-A")
    _run(first, "git", "commit", "-q", "-m", "built")
    _dvc(first, "push", "--run-cache")
    assert any(remote.rglob("*"))

    second = tmp_path / "second"
    _run(tmp_path, "git", "clone", "-q", str(first), str(second))
    assert not (second / "artifacts" / "models" / "tiny_mlp" / "export").exists()
    _dvc(second, "pull", "--run-cache")
    again = _dvc(second, "repro")
    ran = [line for line in (again.stdout + again.stderr).splitlines() if line.startswith("Running stage")]
    assert ran == [], ran
    assert _tree_hashes(second) == _tree_hashes(first)
    assert "up to date" in _dvc(second, "status").stdout.lower()

    # an unreachable remote: DVC's error, nothing local deleted
    before = _tree_hashes(second)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the remote's folder should be\n")
    _dvc(second, "remote", "add", "broken", str(blocker / "remote"))
    failed = _dvc(second, "push", "-r", "broken", check=False)
    assert failed.returncode != 0 and "ERROR" in failed.stderr
    assert _tree_hashes(second) == before
    assert os.listdir(second / ".dvc" / "cache")
