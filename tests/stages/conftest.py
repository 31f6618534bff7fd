"""Running model stage commands (prepare, export) as a user would, in a throw-away project folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


class ModelStages:
    """Helpers for tests (importlib import mode cannot import conftest as a module)."""

    @staticmethod
    def write_params(root: Path, **models: dict) -> Path:
        path = root / "params.yaml"
        path.write_text(yaml.safe_dump({"models": models}))
        return path

    @staticmethod
    def run(root: Path, stage: str, model: str = "cnn") -> subprocess.CompletedProcess:
        """``python -m pipeline.stages.<prepare|export>`` with the paths dvc.yaml gives them."""
        base = f"artifacts/models/{model}"
        args = {
            "prepare": ["--out", f"{base}/source", "--metrics", f"metrics/models/{model}.json"],
            "export": ["--source", f"{base}/source", "--out", f"{base}/export"],
        }[stage]
        cmd = [sys.executable, "-m", f"pipeline.stages.{stage}", "--params", "params.yaml", "--model", model, *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ONNXBUILD_LOG_DIR": str(root / "logs")}
        return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)

    @staticmethod
    def error_line(proc: subprocess.CompletedProcess) -> str:
        """The one ``error:`` line a failed stage prints (and no traceback)."""
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        return errors[0]

    @staticmethod
    def help_imports(stage: str, modules: tuple[str, ...]) -> subprocess.CompletedProcess:
        """Run ``<stage> --help`` in a fresh interpreter; its last stdout line lists which of
        ``modules`` got imported."""
        code = (
            "import sys\n"
            f"sys.argv = [{stage!r}, '--help']\n"
            f"import pipeline.stages.{stage} as stage\n"
            "try:\n    stage.main()\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {modules!r} if m in sys.modules))\n"
        )
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def stages() -> type[ModelStages]:
    return ModelStages
