"""End to end in a temporary git repository: dvc repro, no-op rerun, exactly-the-right reruns,
the never-stale check, a failing build that leaves the others intact, lock contention, and DVC
experiments (workspace and queued)."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.slow

BUILD_STAGES = ("prepare", "export", "passes", "quantize", "evaluate")


def _builds(stages: set[str]) -> set[str]:
    """Ignore the bookkeeping stages (params check, report) that follow any change."""
    return {s for s in stages if s.split("@")[0] in BUILD_STAGES}


def test_repro_noop_targeted_reruns_stale_check_and_failures(small_repo):
    repo = small_repo
    repo.onnxbuild("compose")
    first = repo.dvc("repro")
    assert _builds(repo.ran(first)) == {
        "prepare@digits_cnn", "export@digits_cnn",
        *(f"{s}@{b}" for s in ("passes", "quantize", "evaluate") for b in ("cnn_fp32", "cnn_static_int8")),
    }
    for build in ("cnn_fp32", "cnn_static_int8"):
        summary = json.loads((repo.path / "metrics" / "summary" / f"{build}.json").read_text())
        assert summary["p50_ms"] > 0
        assert (repo.path / "artifacts" / "builds" / build / "model" / "model.onnx").is_file()
    assert (repo.path / "reports" / "summary.md").is_file()
    assert (repo.path / "reports" / "builds.csv").is_file()
    shown = repo.dvc("metrics", "show").stdout
    assert "metrics/summary/cnn_fp32.json" in shown and "p50_ms" in shown
    assert len(shown.splitlines()[0]) < 400  # one row per build, a few headline columns

    # a second dvc repro is a no-op
    again = repo.dvc("repro")
    assert repo.ran(again) == set()
    assert "up to date" in repo.dvc("status").stdout
    repo.commit("built")

    # a recipe edit without compose: the params stage stops everything and names the command
    cpu = repo.path / "conf" / "target" / "cpu.yaml"
    cpu.write_text(cpu.read_text().replace("threads: 0", "threads: 1"))
    stale = repo.dvc("repro", check=False)
    assert stale.returncode != 0
    assert "onnxbuild compose" in stale.stderr + stale.stdout
    assert repo.ran(stale) == {"params"}

    # compose: a target-only change reruns exactly the quantize (quantization: auto measures on the
    # target) and evaluate stages
    repo.onnxbuild("compose")
    target = repo.dvc("repro")
    assert _builds(repo.ran(target)) == {
        "quantize@cnn_fp32", "quantize@cnn_static_int8", "evaluate@cnn_fp32", "evaluate@cnn_static_int8"
    }

    # a calibration change reruns only that build's quantize + evaluate
    repo.onnxbuild("compose", "builds.cnn_static_int8.quantization.calibration.num_samples=16")
    calib = repo.dvc("repro")
    # exactly these (params-only change: the conf/ check does not rerun); report follows new metrics
    assert repo.ran(calib) - {"report"} == {"quantize@cnn_static_int8", "evaluate@cnn_static_int8"}
    assert repo.ran(repo.dvc("repro")) == set()

    # a build that misses a gate is a verdict, not a crash: DVC runs on and locks it, the other build
    # updates, the failing build's artifact stays; `onnxbuild verdicts` fails naming it
    fp32_model = (repo.path / "artifacts" / "builds" / "cnn_fp32" / "model" / "model.onnx").read_bytes()
    repo.onnxbuild("compose", "target.threads=2", "builds.cnn_fp32.evaluate.gates.max_p50_ms=0.000001")
    gated = repo.dvc("repro", "--keep-going")
    assert "max_p50_ms" in gated.stderr + gated.stdout
    assert {"evaluate@cnn_static_int8", "evaluate@cnn_fp32", "report"} <= repo.ran(gated)
    lock = (repo.path / "dvc.lock").read_text()
    assert "threads: 2" in lock  # evaluate@cnn_static_int8 recorded with the new target
    assert (repo.path / "artifacts" / "builds" / "cnn_fp32" / "model" / "model.onnx").read_bytes() == fp32_model
    metrics = json.loads((repo.path / "metrics" / "builds" / "cnn_fp32.json").read_text())
    assert metrics["latency_ms"]["p50"] > 0 and metrics["verdict"] == "fails_gates"
    assert json.loads(repo.dvc("status", "--json").stdout) == {}  # locked: no re-measuring on every repro
    assert "fails_gates" in (repo.path / "reports" / "summary.md").read_text()
    verdicts = repo.onnxbuild("verdicts", check=False)
    assert verdicts.returncode == 1 and "cnn_fp32: fails_gates" in verdicts.stderr
    assert "cnn_static_int8" not in verdicts.stderr

    # a stage that fails (missing checkpoint) destroys nothing: outputs are persistent and replaced
    # atomically only on success, so the earlier source, its metrics and the downstream artifacts stay
    source = repo.path / "artifacts" / "models" / "digits_cnn" / "source" / "model.pt"
    before = source.read_bytes()
    repo.onnxbuild("compose", "target.threads=2", "models.digits_cnn.checkpoint=checkpoints/missing.pt")
    broken = repo.dvc("repro", check=False)
    assert broken.returncode != 0
    assert "models.digits_cnn.checkpoint" in broken.stderr + broken.stdout
    assert source.read_bytes() == before
    assert (repo.path / "metrics" / "models" / "digits_cnn.json").is_file()
    assert (repo.path / "artifacts" / "models" / "digits_cnn" / "export" / "model.onnx").is_file()


def test_lock_contention_gives_a_clear_message(small_repo):
    from dvc.repo import Repo as DvcRepo

    repo = small_repo
    repo.onnxbuild("compose")
    dvc_repo = DvcRepo(str(repo.path))
    try:
        with dvc_repo.lock:
            busy = repo.dvc("repro", check=False, timeout=120)
    finally:
        dvc_repo.close()
    assert busy.returncode != 0
    assert "Unable to acquire lock" in busy.stderr
    assert repo.ran(busy) == set()


def test_dvc_experiments_workspace_and_queue(small_repo):
    repo = small_repo
    repo.onnxbuild("compose")
    repo.dvc("repro")
    repo.commit("baseline")

    one = repo.dvc("exp", "run", "-S", "builds.cnn_static_int8.quantization.calibration.num_samples=64")
    assert _builds(repo.ran(one)) == {"quantize@cnn_static_int8", "evaluate@cnn_static_int8"}

    repo.dvc("exp", "run", "--queue", "-S", "builds.cnn_static_int8.quantization.calibration.num_samples=8,16")
    repo.dvc("queue", "start", "-j", "1")
    deadline = time.time() + 900
    while time.time() < deadline:
        status = repo.dvc("queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Failed" not in status, status + repo.dvc("queue", "logs", status.split()[-1], check=False).stdout
    repo.dvc("queue", "stop", check=False)

    shown = json.loads(repo.dvc("exp", "show", "--json").stdout)
    samples = set()
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                n = params.get("builds", {}).get("cnn_static_int8", {}).get("quantization", {}).get("calibration", {}).get("num_samples")
                metrics = data.get("metrics", {}).get("metrics/summary/cnn_static_int8.json", {}).get("data", {})
                if n is not None and metrics.get("p50_ms"):
                    samples.add(n)
    assert {8, 16, 64} <= samples
