"""dvc.yaml: per-stage deps and params, shared upstream stages, metrics/plots, and which stages a
params change marks as changed (checked with `dvc status` on a lock file committed from stand-in
outputs, so nothing is built here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.report.summary import COLUMNS

BUILD_STAGES = ("passes", "quantize", "evaluate")


def load_stages(project: Path) -> dict:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    repo = Repo(str(project))
    try:
        out = {}
        for stage in repo.index.stages:
            params = sorted(p for d in stage.deps if isinstance(d, ParamsDependency) for p in d.params)
            deps = sorted(d.def_path for d in stage.deps if not isinstance(d, ParamsDependency))
            outs = {o.def_path: {"cache": o.use_cache, "metric": o.metric} for o in stage.outs}
            preds = sorted(s.name for s in repo.index.graph.successors(stage))
            out[stage.name] = {"deps": deps, "params": params, "outs": outs, "upstream": preds}
        return out
    finally:
        repo.close()


def composed(project: Path) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text())


def test_every_model_and_build_gets_its_stages(project):
    stages = load_stages(project)
    params = composed(project)
    expected = {"params", "report"}
    expected |= {f"{s}@{m}" for s in ("prepare", "export") for m in params["models"]}
    expected |= {f"{s}@{b}" for s in BUILD_STAGES for b in params["builds"]}
    assert set(stages) == expected


def covered(path: str, deps: list[str]) -> bool:
    """``path`` is a dep, or lies in a folder that is one."""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def test_stage_deps_are_own_code_and_upstream_artifacts(project):
    stages = load_stages(project)
    params = composed(project)
    for name, model in params["models"].items():
        prep = stages[f"prepare@{name}"]
        assert "pipeline/stages/prepare.py" in prep["deps"]
        for code in (f"pipeline/sources/{model['framework']}_source.py", "pipeline/sources/common.py",
                     "pipeline/data/digits.py", "pipeline/train/common.py"):
            assert covered(code, prep["deps"]), f"prepare@{name} does not depend on {code}"
        assert model["watch"] in prep["deps"]
        exp = stages[f"export@{name}"]
        assert f"artifacts/models/{name}/source" in exp["deps"]
        assert "pipeline/stages/export.py" in exp["deps"]
        for code in (f"pipeline/sources/{model['framework']}_source.py", "pipeline/sources/common.py",
                     "pipeline/data/digits.py"):
            assert covered(code, exp["deps"]), f"export@{name} does not depend on {code}"
    for name, build in params["builds"].items():
        m = build["model"]
        assert f"artifacts/models/{m}/export" in stages[f"passes@{name}"]["deps"]
        assert "pipeline/stages/passes.py" in stages[f"passes@{name}"]["deps"]
        assert f"artifacts/builds/{name}/passes" in stages[f"quantize@{name}"]["deps"]
        assert "pipeline/stages/quantize.py" in stages[f"quantize@{name}"]["deps"]
        for code in ("pipeline/quantization/static.py", "pipeline/passes/base.py", "pipeline/passes/opset.py",
                     "pipeline/data/digits.py"):  # the quantizer upgrades opsets and reads calibration data
            assert covered(code, stages[f"quantize@{name}"]["deps"]), f"quantize@{name} does not depend on {code}"
        ev = stages[f"evaluate@{name}"]["deps"]
        assert f"artifacts/builds/{name}/model" in ev and f"artifacts/models/{m}/export" in ev
        assert "pipeline/stages/evaluate.py" in ev
    for name, stage in stages.items():  # the shared code every stage runs on
        for code in ("pipeline/stages/runner.py", "pipeline/fsutil.py" if name != "params" else "pipeline/schema.py"):
            assert covered(code, stage["deps"]), f"{name} does not depend on {code}"
        for dep in stage["deps"]:
            if dep.startswith(("pipeline/", "conf")):
                assert (project / dep).exists(), f"{name}: dep {dep} does not exist"
        if name != "params":
            assert "artifacts/params.ok" in stage["deps"], f"{name} does not wait for the params check"


def test_stage_params_are_exactly_what_each_stage_reads(project):
    stages = load_stages(project)
    params = composed(project)
    for name, build in params["builds"].items():
        m = build["model"]
        assert stages[f"passes@{name}"]["params"] == sorted(
            [f"builds.{name}.model", f"builds.{name}.passes", f"models.{m}.export.dims"]
        )
        q = stages[f"quantize@{name}"]["params"]
        assert f"builds.{name}.quantization" in q and f"models.{m}.calibration" in q
        # `quantization: auto` measures candidates on the target against the gates
        assert f"builds.{name}.target" in q and f"builds.{name}.evaluate" in q
        assert not any(".passes" in p or ".train" in p for p in q)
        ev = stages[f"evaluate@{name}"]["params"]
        assert f"builds.{name}.target" in ev and f"builds.{name}.evaluate" in ev
        assert not any(".quantization" in p or ".passes" in p or ".calibration" in p or ".train" in p for p in ev)
    for name in params["models"]:
        prep = stages[f"prepare@{name}"]["params"]
        assert f"models.{name}.train" in prep
        assert not any(p.endswith((".calibration", ".reference", ".export")) for p in prep)
    # every listed key exists in the composed params (DVC fails on a missing one)
    for name, stage in stages.items():
        for key in stage["params"]:
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: params key {key} missing"
                node = node[part]


def test_builds_of_one_model_share_prepare_and_export(project):
    stages = load_stages(project)
    params = composed(project)
    by_model: dict[str, list[str]] = {}
    for name, build in params["builds"].items():
        by_model.setdefault(build["model"], []).append(name)
    shared = [m for m, builds in by_model.items() if len(builds) > 1]
    assert shared, "the default project should have a model with several builds"
    for model in shared:
        for build in by_model[model]:
            assert f"export@{model}" in stages[f"passes@{build}"]["upstream"]
    assert sum(1 for s in stages if s.startswith("export@")) == len(params["models"])


def test_artifacts_are_cached_outs_and_headline_metrics_are_metrics(project):
    stages = load_stages(project)
    params = composed(project)
    for name in params["builds"]:
        assert stages[f"quantize@{name}"]["outs"][f"artifacts/builds/{name}/model"]["cache"] is True
        outs = stages[f"evaluate@{name}"]["outs"]
        assert outs[f"metrics/summary/{name}.json"] == {"cache": False, "metric": True}
        assert outs[f"metrics/builds/{name}.json"]["cache"] is False
    for name in params["models"]:
        assert stages[f"export@{name}"]["outs"][f"artifacts/models/{name}/export"]["cache"] is True


def test_plots_use_report_columns():
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "dvc.yaml").read_text())
    assert data["plots"]
    for entry in data["plots"]:
        (spec,) = entry.values()
        assert spec["x"] in COLUMNS
        for path, column in spec["y"].items():
            assert path == "reports/builds.csv" and column in COLUMNS


def _commit_stand_ins(project: Path, tools) -> None:
    """Create every out with placeholder content and record a lock file, without running stages."""
    from dvc.repo import Repo

    repo = Repo(str(project))
    try:
        for stage in repo.index.stages:
            for out in stage.outs:
                path = project / out.def_path
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "stand-in.txt").write_text(out.def_path)
    finally:
        repo.close()
    tools.run([sys.executable, "-m", "dvc", "commit", "-f", "-q"], project)
    status = tools.run([sys.executable, "-m", "dvc", "status", "--json"], project)
    assert json.loads(status.stdout) == {}


def changed_stages(project: Path, tools) -> set[str]:
    status = tools.run([sys.executable, "-m", "dvc", "status", "--json"], project)
    return set(json.loads(status.stdout)) - {"params"}


@pytest.fixture(scope="module")
def committed(tmp_path_factory, tools_module):
    """One project whose lock file records stand-in outputs of every stage (shared by the cases below)."""
    tools = tools_module
    project = tools.copy_project(tmp_path_factory.mktemp("committed") / "project")
    tools.compose_in(project)
    _commit_stand_ins(project, tools)
    return project


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("target.threads=1", lambda p: {f"{s}@{b}" for b in p["builds"] for s in ("quantize", "evaluate")}),
        ("builds.cnn_static_int8.target.threads=1", lambda p: {"quantize@cnn_static_int8", "evaluate@cnn_static_int8"}),
        ("builds.cnn_static_int8.evaluate.runs=50", lambda p: {"quantize@cnn_static_int8", "evaluate@cnn_static_int8"}),
        ("builds.cnn_static_int8.quantization.calibration.num_samples=64", lambda p: {"quantize@cnn_static_int8"}),
        ("builds.cnn_fp32.passes=[]", lambda p: {"passes@cnn_fp32"}),
        (
            "models.digits_cnn.calibration.split=val",
            lambda p: {f"quantize@{b}" for b, s in p["builds"].items() if s["model"] == "digits_cnn"},
        ),
        ("models.digits_cnn.train.epochs=3", lambda p: {"prepare@digits_cnn"}),
    ],
)
def test_a_params_change_marks_exactly_the_stages_that_read_it(committed, tools, override, expected):
    """Downstream stages rerun only if an upstream artifact really changes (e2e tests cover that)."""
    params = composed(committed)
    try:
        tools.compose_in(committed, override)
        # the report reads every build's and model's settings (it lists every build of the project)
        assert changed_stages(committed, tools) == expected(params) | {"report"}
    finally:
        tools.compose_in(committed)
    assert changed_stages(committed, tools) == set()
