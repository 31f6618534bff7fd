"""Packaging real builds of a small DVC project (tests/package/conftest.py) and running the package's
infer.py in a fresh process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from pipeline.package import PackageError, package_build
from pipeline.package.manifest import MANIFEST, check_manifest

pytestmark = pytest.mark.slow  # the module builds a DVC project once (~30 s)


@pytest.fixture(autouse=True)
def _in_project(built_project, monkeypatch):
    """Stages and `onnxbuild` run in the project root (its conf/config.yaml decides what may be imported)."""
    monkeypatch.chdir(built_project.path)


def _session_like_evaluate(project, build, model_file):
    """The build's session as the evaluate stage makes it (its target and params)."""
    from pipeline.stages.runner import build_spec, load_params
    from pipeline.targets import get_target

    spec, _ = build_spec(load_params(project.path / "params.yaml"), build)
    return get_target(spec.target.name).session(model_file, spec.target.params)


def test_package_runs_in_a_fresh_process_like_evaluate(built_project, tmp_path):
    out = tmp_path / "out"
    done = package_build("mlp_fp32", root=built_project.path, out=out)
    folder = out / "mlp_fp32"
    assert done.folder == folder and done.zip == out / "mlp_fp32.zip" and done.overridden is None
    names = set(done.files)
    assert {"model/model.onnx", "session.json", "recipe.yaml", "metrics.json", "passes.json", "quantization.json",
            "example_inputs.npz", "infer.py", "package.json", "README.md", MANIFEST} <= names
    assert check_manifest(folder) == []

    # settings: exactly the build's target params, as ONNX Runtime's own enum names
    settings = json.loads((folder / "session.json").read_text())
    assert settings["intra_op_num_threads"] == 1 and settings["inter_op_num_threads"] == 0
    assert settings["graph_optimization_level"] == "ORT_ENABLE_ALL" and settings["execution_mode"] == "ORT_SEQUENTIAL"
    assert settings["session_config"] == {"session.intra_op.allow_spinning": "0"}
    assert settings["providers"] == [{"name": "CPUExecutionProvider", "options": {}}]
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    params = yaml.safe_load((built_project.path / "params.yaml").read_text())
    assert recipe == {"builds": {"mlp_fp32": params["builds"]["mlp_fp32"]},
                      "models": {"tiny_mlp": params["models"]["tiny_mlp"]}}
    assert json.loads((folder / "metrics.json").read_text()) == json.loads(
        (built_project.path / "metrics" / "builds" / "mlp_fp32.json").read_text())

    # infer.py in a fresh process, from a copy of the package elsewhere (nothing of this project needed)
    moved = tmp_path / "deployed"
    shutil.copytree(folder, moved)
    proc = subprocess.run([sys.executable, "-I", str(moved / "infer.py"), "--save", str(tmp_path / "o.npz")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"verified {len(done.files) - 1} files against {MANIFEST}" in proc.stdout
    assert "output scores: shape [1, 4] float32" in proc.stdout
    with np.load(moved / "example_inputs.npz") as data:
        feeds = {k: data[k] for k in data.files}
    assert list(feeds) == ["features"] and feeds["features"].shape == (1, 16)
    expected = _session_like_evaluate(built_project, "mlp_fp32",
                                      built_project.path / "artifacts/builds/mlp_fp32/model/model.onnx").run(None, feeds)
    with np.load(tmp_path / "o.npz") as data:
        np.testing.assert_array_equal(data["scores"], expected[0])

    # the zip holds the same files under mlp_fp32/, and its infer.py runs too
    with zipfile.ZipFile(done.zip) as zf:
        assert sorted(zf.namelist()) == sorted(f"mlp_fp32/{n}" for n in done.files)
        zf.extractall(tmp_path / "unzipped")
    proc = subprocess.run([sys.executable, "-I", str(tmp_path / "unzipped/mlp_fp32/infer.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "output scores" in proc.stdout, proc.stderr


def test_infer_refuses_a_changed_package_and_makes_up_inputs(built_project, tmp_path):
    done = package_build("mlp_fp32", root=built_project.path, out=tmp_path)
    model = done.folder / "model" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    proc = subprocess.run([sys.executable, "-I", str(done.folder / "infer.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "model/model.onnx does not match its SHA-256 in SHA256SUMS" in proc.stderr

    # a truncated manifest, or one that leaves out a file the script loads, verifies nothing: refused
    done = package_build("mlp_fp32", root=built_project.path, out=tmp_path / "again")
    manifest = done.folder / MANIFEST
    full = manifest.read_text()
    for text, expected in (("", "session.json is not listed in SHA256SUMS"),
                           ("".join(line + "\n" for line in full.splitlines() if "model/model.onnx" not in line),
                            "model/model.onnx not listed in SHA256SUMS")):
        manifest.write_text(text)
        proc = subprocess.run([sys.executable, "-I", str(done.folder / "infer.py")], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode != 0 and expected in proc.stderr, proc.stderr

    from pipeline.package import infer

    sess = ort.InferenceSession(str(built_project.path / "artifacts/builds/mlp_fp32/model/model.onnx"))
    feeds = infer.made_up_inputs(sess, batch=3)
    assert feeds["features"].shape == (3, 16) and feeds["features"].dtype == np.float32
    assert sess.run(None, feeds)[0].shape == (3, 4)


def test_refusals_name_the_reason(built_project, tmp_path):
    with pytest.raises(PackageError, match=r"build 'mlp_gated' failed its gates: .*p50.*--allow-failed"):
        package_build("mlp_gated", root=built_project.path, out=tmp_path)
    with pytest.raises(PackageError, match=r"build 'mlp_unbuilt' was not built: .*dvc repro evaluate@mlp_unbuilt"):
        package_build("mlp_unbuilt", root=built_project.path, out=tmp_path)
    assert not (tmp_path / "mlp_gated").exists() and not (tmp_path / "mlp_gated.zip").exists()
    with pytest.raises(PackageError, match=r"build 'mlp_unbuilt' has no model to package: .*model.onnx does not exist"):
        package_build("mlp_unbuilt", root=built_project.path, out=tmp_path, allow_failed=True)

    done = package_build("mlp_gated", root=built_project.path, out=tmp_path, allow_failed=True)
    info = json.loads((done.folder / "package.json").read_text())
    assert info["packaged_despite"].startswith("failed its gates") and info["gates_passed"] is False
    assert "WARNING: packaged with --allow-failed" in (done.folder / "README.md").read_text()

    with pytest.raises(PackageError, match="already exists: pass --force"):
        package_build("mlp_gated", root=built_project.path, out=tmp_path, allow_failed=True)
    before = (done.folder / MANIFEST).read_text(), done.zip.read_bytes()
    package_build("mlp_gated", root=built_project.path, out=tmp_path, allow_failed=True, force=True)
    assert ((done.folder / MANIFEST).read_text(), done.zip.read_bytes()) == before  # same inputs, same package


def test_force_replaces_only_an_earlier_package(built_project, tmp_path):
    # --out artifacts/builds --force would have replaced the build's own DVC outputs with the package
    own = built_project.path / "artifacts" / "builds"
    before = sorted(p.relative_to(own).as_posix() for p in own.rglob("*"))
    with pytest.raises(PackageError, match=r"artifacts/builds/mlp_fp32 exists and is not a package .*not replaced"):
        package_build("mlp_fp32", root=built_project.path, out=own, force=True)
    assert sorted(p.relative_to(own).as_posix() for p in own.rglob("*")) == before
    assert not (own / "mlp_fp32.zip").exists()

    other = tmp_path / "other"
    (other / "mlp_fp32").mkdir(parents=True)
    (other / "mlp_fp32" / "notes.txt").write_text("mine")
    with pytest.raises(PackageError, match="is not a package"):
        package_build("mlp_fp32", root=built_project.path, out=other, force=True)
    assert (other / "mlp_fp32" / "notes.txt").read_text() == "mine"
    (other / "mlp_fp32" / "notes.txt").unlink()
    (other / "mlp_fp32").rmdir()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(PackageError, match=r"cannot write packages into .*a_file/sub: Not a directory"):
        package_build("mlp_fp32", root=built_project.path, out=blocker / "sub")
    (other / "mlp_fp32.zip").write_bytes(b"not a zip")
    with pytest.raises(PackageError, match=r"mlp_fp32.zip exists and is not a package of build 'mlp_fp32'"):
        package_build("mlp_fp32", root=built_project.path, out=other, force=True)
    assert (other / "mlp_fp32.zip").read_bytes() == b"not a zip"


def test_crashed_and_out_of_date_builds_are_refused(built_project, tmp_path):
    import os
    import time

    params = built_project.path / "params.yaml"
    original = params.read_text()
    try:  # a target change since the measurement: the package's session.json would not be what was measured
        data = yaml.safe_load(original)
        data["builds"]["mlp_fp32"]["target"]["threads"] = 2
        params.write_text(yaml.safe_dump(data, sort_keys=False))
        with pytest.raises(PackageError, match=r"mlp_fp32' is out of date: .*builds.mlp_fp32.target.*"
                                               r"dvc repro evaluate@mlp_fp32"):
            package_build("mlp_fp32", root=built_project.path, out=tmp_path)
    finally:
        params.write_text(original)

    log = built_project.path / "logs" / "evaluate" / "mlp_fp32.log"
    saved = log.read_text()
    try:  # its latest evaluate run crashed after the metrics were written
        stamp = time.strftime("%Y-%m-%d %H:%M:%S,000", time.localtime(time.time() + 5))
        log.write_text(f"{stamp} INFO fidelity on 32 held-out samples\n{stamp} DEBUG Traceback (most recent call last):\n"
                       '  File "x.py", line 1, in <module>\nMemoryError: out of memory\n')
        with pytest.raises(PackageError, match=r"mlp_fp32' crashed in its evaluate stage: .*MemoryError"):
            package_build("mlp_fp32", root=built_project.path, out=tmp_path)
    finally:
        log.write_text(saved)
        os.utime(log, (time.time() - 60, time.time() - 60))


def test_command_line(built_project, tmp_path):
    out = tmp_path / "cli"
    proc = built_project.run(sys.executable, "-m", "pipeline.cli", "package", "mlp_fp32", "--out", str(out))
    assert f"wrote {out / 'mlp_fp32'}" in proc.stdout and (out / "mlp_fp32.zip").is_file()
    proc = built_project.run(sys.executable, "-m", "pipeline.cli", "package", "mlp_gated", "--out", str(out),
                             check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith("error: build 'mlp_gated' failed its gates")
    proc = built_project.run(sys.executable, "-m", "pipeline.cli", "package", "nope", check=False)
    assert proc.returncode == 1 and "unknown build 'nope'" in proc.stderr and "mlp_fp32" in proc.stderr
