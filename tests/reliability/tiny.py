"""A tiny self-contained project for the reliability suite (never the user's conf/).

One ONNX source model (a 4->3 MatMul + Softmax classifier written here, no framework import) and two
builds (fp32, dynamic int8), with config groups so overrides of every kind apply. ``make_project``
writes conf/; ``make_dvc_project`` adds the framework files (pipeline/, dvc.yaml) and git + DVC.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
defaults:
  - model@models.tiny: tiny
  - recipe@builds.tiny_fp32: tiny_fp32
  - recipe@builds.tiny_int8: tiny_int8
  - experiment: null
  - _self_
project:
  allow_targets: [pipeline]
  allow_paths: []
"""

FILES = {
    "config.yaml": CONFIG,
    "model/tiny.yaml": """\
framework: onnx
factory: null
path: models/tiny.onnx
checkpoint: null
watch: models/tiny.onnx
inputs:
  - name: x
    dtype: float32
    shape: [batch, 4]
    range: [-1.0, 1.0]
outputs: null
task: classification
fidelity: {}
metrics: []
stream: null
train: null
export:
  opset: 17
  dynamic: true
  dims: {batch: 1}
reference:
  dataset: null
  num_samples: 64
  seed: 0
calibration: null
""",
    "build/default.yaml": """\
defaults:
  - /passes@passes: default
  - /quantization@quantization: none
  - /target@target: cpu
  - /evaluate@evaluate: default
  - _self_
""",
    "passes/default.yaml": "- name: shape_inference\n  params: {}\n",
    "passes/none.yaml": "[]\n",
    "quantization/none.yaml": "name: none\n",
    "quantization/dynamic_int8.yaml": "name: dynamic_int8\n",
    "target/cpu.yaml": "name: cpu\nthreads: 1\n",
    "target/cpu_2threads.yaml": "name: cpu\nthreads: 2\n",
    "evaluate/default.yaml": "warmup: 1\nruns: 10\nbatch_size: 1\nfidelity_samples: 32\ngates: {min_cosine: 0.9}\n",
    "recipe/tiny_fp32.yaml": "defaults:\n  - /build@_here_: default\n  - _self_\n\nmodel: tiny\n",
    "recipe/tiny_int8.yaml": (
        "defaults:\n  - /build@_here_: default\n  - override /quantization@quantization: dynamic_int8\n"
        "  - _self_\n\nmodel: tiny\nevaluate:\n  gates: {min_cosine: null}\n"
    ),
    "sweep.yaml": """\
defaults:
  - model: tiny
  - passes: default
  - quantization: none
  - target: cpu
  - evaluate: default
  - _self_
cache_dir: ${hydra:runtime.cwd}/.onnxbuild-cache
objective:
  metric: latency_ms.p50
  direction: minimize
hydra:
  sweep:
    dir: sweeps/${now:%Y-%m-%d}/${now:%H-%M-%S}
    subdir: ${hydra.job.num}
  job:
    chdir: false
  callbacks:
    leaderboard:
      _target_: pipeline.leaderboard.LeaderboardCallback
""",
    "experiment/one_thread.yaml": "# @package _global_\nbuilds:\n  tiny_fp32:\n    target: {threads: 1}\n",
}


def tiny_onnx(path: Path) -> Path:
    """A 4 -> 3 classifier (MatMul, Add, Softmax) with fixed weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_project(dest: Path) -> Path:
    """conf/ and models/tiny.onnx in ``dest`` (plus an empty dvc.yaml: compose checks `watch` there)."""
    for rel, text in FILES.items():
        file = dest / "conf" / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    tiny_onnx(dest / "models" / "tiny.onnx")
    return dest


def env_for(dest: Path) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
        "ONNXBUILD_LOG_DIR": str(dest / "logs"),
        "PYTHONHASHSEED": "0",
    }
    env.pop("DVC_EXP_NAME", None)
    return env


def run(dest: Path, *cmd: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=dest, env=env_for(dest), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def make_dvc_project(dest: Path) -> Path:
    """The tiny project with the framework files as a git + DVC repository, params.yaml composed."""
    make_project(dest)
    for name in ("pipeline", "dvc.yaml", ".dvcignore", ".gitignore", "requirements", "pyproject.toml"):
        src = ROOT / name
        if not src.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    run(dest, "git", "init", "-q")
    run(dest, sys.executable, "-m", "dvc", "init", "-q")
    if (ROOT / ".dvc" / "config").is_file():
        shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    run(dest, sys.executable, "-m", "pipeline.compose")
    run(dest, "git", "add", "-A")
    run(dest, "git", "commit", "-q", "-m", "tiny project")
    return dest
