"""The sweep app's pieces: unique locked folders, content-addressed model keys from the derived code
closure, the one-build project, the leaderboard (gate-passing points only, ties within noise, per
host), promote's refusal of failed points, launcher/Ray-address checks. Uses the fixture project's
config groups with the framework's conf/sweep.yaml."""

from __future__ import annotations

import datetime as dt
import json
import math
import multiprocessing
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from pipeline import leaderboard, sweep
from pipeline.errors import ConfigError
from pipeline.schema import validate_model, validate_project
from pipeline.sweep import METRICS_FILE, POINT_FILE, model_key, point_project, upstream_code

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_hydra():
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def sweep_conf(fixture_conf):
    shutil.copy2(ROOT / "conf" / "sweep.yaml", fixture_conf / "sweep.yaml")
    return fixture_conf


def _sweep_cfg(conf: Path, *overrides):
    with initialize_config_dir(str(conf), version_base=None):
        return compose("sweep", overrides=list(overrides))


def test_point_project_is_a_valid_one_build_project(sweep_conf):
    cfg = _sweep_cfg(sweep_conf, "quantization=static_int8", "target.threads=2")
    project = validate_project(point_project(cfg, "digits_cnn"))
    build = project.builds["point"]
    assert build.model == "digits_cnn" and build.quantization.name == "static_int8"
    assert build.target.params.threads == 2
    assert sweep.objective_of(cfg) == ("latency_ms.p50", "minimize")


def test_model_key_hashes_the_derived_code_closure_and_the_watch_path(sweep_conf, tmp_path):
    cfg = _sweep_cfg(sweep_conf)
    data = point_project(cfg, "digits_cnn")["models"]["digits_cnn"]
    project = sweep_conf.parent
    spec = validate_model(data, "models.digits_cnn")
    code = {p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else p.relative_to(project).as_posix()
            for p in upstream_code(spec, project)}
    # what the hand-kept list missed: datasets (named by _target_), onnx_utils, schema; and the project's factory
    assert {"pipeline/data/digits.py", "pipeline/onnx_utils.py", "pipeline/schema.py", "pipeline/stages/export.py",
            "pipeline/sources/torch_source.py", "fixturemodels/cnn.py"} <= code
    assert model_key(spec, project) == model_key(validate_model(data, "m"), project)
    changed = validate_model({**data, "train": {**data["train"], "epochs": 3}}, "m")
    assert model_key(changed, project) != model_key(spec, project)
    before = model_key(spec, project)
    (project / "fixturemodels" / "cnn.py").write_text((project / "fixturemodels" / "cnn.py").read_text() + "\n# edit\n")
    assert model_key(spec, project) != before


def _claim(base: str, stamp: str, queue) -> None:
    queue.put(str(sweep.claim_new_dir(Path(base), dt.datetime.fromisoformat(stamp))))


def test_two_sweeps_in_the_same_second_get_two_folders(tmp_path):
    stamp = "2026-11-30T12:00:00"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(str(tmp_path), stamp, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    got = sorted(queue.get(timeout=5) for _ in procs)
    assert len(set(got)) == 4
    assert [Path(g).name for g in got] == ["12-00-00", "12-00-00-2", "12-00-00-3", "12-00-00-4"]


def test_a_held_or_used_sweep_folder_is_refused(tmp_path):
    folder = tmp_path / "s"
    with sweep.sweep_lock(folder):
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            err = pool.apply(_try_lock, (str(folder),))
        assert "another sweep is writing into this folder" in err
    (folder / "0").mkdir()
    (folder / "0" / POINT_FILE).write_text("{}")
    with pytest.raises(ConfigError, match="holds an earlier sweep's points"):
        with sweep.sweep_lock(folder):
            pass
    assert (folder / "0" / POINT_FILE).read_text() == "{}"


def _try_lock(folder: str) -> str:
    try:
        with sweep.sweep_lock(Path(folder)):
            return ""
    except ConfigError as exc:
        return str(exc)


def test_missing_launcher_and_unanswering_ray_address_are_one_line(tmp_path, monkeypatch):
    real = sweep.importlib.util.find_spec
    monkeypatch.setattr(sweep.importlib.util, "find_spec",
                        lambda name: None if name == "hydra_plugins.hydra_ray_launcher" else real(name))
    with pytest.raises(ConfigError, match=r"needs the package hydra-ray-launcher.*\.\[cluster\]"):
        sweep.check_launcher(["-m", "hydra/launcher=ray"], tmp_path)
    (tmp_path / "hydra" / "launcher").mkdir(parents=True)
    (tmp_path / "hydra" / "launcher" / "mycluster.yaml").write_text("defaults:\n  - ray\n")
    with pytest.raises(ConfigError, match="hydra-ray-launcher"):
        sweep.check_launcher(["hydra/launcher=mycluster"], tmp_path)
    sweep.check_launcher(["hydra/launcher=joblib"], tmp_path)  # installed: no error
    monkeypatch.setattr(sweep, "RAY_CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(ConfigError, match="no Ray cluster answers at 127.0.0.1:9"):
        sweep.check_ray_address(["hydra/launcher=ray", "hydra.launcher.ray.init.address=127.0.0.1:9"])
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        sweep.check_ray_address(["hydra/launcher=ray", "hydra.launcher.ray.init.address=nowhere"])


def _point(folder: Path, job: int, overrides: list[str], p50: float | None, status: str = "ok", error=None,
           host: str = "hostA", interval=(0.99, 1.01)):
    folder.mkdir(parents=True)
    failures = [] if status == "ok" else ["max_p50_ms"]
    (folder / POINT_FILE).write_text(json.dumps({"job": job, "overrides": overrides, "status": status, "error": error,
                                                 "host": host, "gate_failures": failures}))
    if p50 is not None:
        metrics = {
            "build": {"model": "m", "quantization": overrides[-1].split("=")[1], "passes": [], "target": "cpu"},
            "latency_ms": {"p50": p50, "p90": p50 * 1.1},
            "speedup": 1.0,
            "speedup_noise": {"interval": list(interval)},
            "model_size_mb": 1.0,
            "fidelity": {"cosine_min": 0.99, "top1_agreement": 1.0},
            "accuracy": {"top1": 0.9, "drop": 0.0},
            "gates": {"passed": status == "ok", "failures": failures, "checked": {"max_p50_ms": 1}},
        }
        (folder / METRICS_FILE).write_text(json.dumps(metrics))


def test_leaderboard_ranks_only_gate_passing_points_and_ties_within_noise(tmp_path):
    _point(tmp_path / "0", 0, ["evaluate.runs=10", "quantization=none"], 3.0)
    _point(tmp_path / "1", 1, ["evaluate.runs=10", "quantization=static_int8"], 1.0, interval=(0.9, 1.1))
    _point(tmp_path / "2", 2, ["evaluate.runs=10", "quantization=dynamic_int8"], None, "failed", "quantize stage failed: boom")
    # the fastest point missed a gate: listed apart, never recommended
    _point(tmp_path / "3", 3, ["evaluate.runs=10", "quantization=static_int8_qoperator"], 0.5, "gates failed", "max_p50_ms")
    # within 10 % noise of job 1: a tie
    _point(tmp_path / "4", 4, ["evaluate.runs=10", "quantization=static_int8_per_tensor"], 1.05)
    out = leaderboard.write_leaderboard(tmp_path)
    rows = [r.split(",") for r in (tmp_path / leaderboard.CSV).read_text().splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("1", "True", "1"), ("1", "True", "4"), ("3", "False", "0"),
                                                   ("", "False", "2"), ("", "False", "3")]
    text = out.read_text()
    assert "Every point also has: `evaluate.runs=10`" in text
    assert "failed: quantize stage failed: boom" in text and "FAIL: max_p50_ms" in text
    assert "tied within noise: jobs 1, 4" in text
    assert f"onnxbuild promote {tmp_path / '1'}" in text and f"onnxbuild promote {tmp_path / '3'}" not in text


def test_leaderboard_compares_latency_only_on_one_host(tmp_path):
    _point(tmp_path / "0", 0, ["quantization=none"], 3.0, host="big")
    _point(tmp_path / "1", 1, ["quantization=static_int8"], 1.0, host="small")
    _point(tmp_path / "2", 2, ["quantization=dynamic_int8"], 2.0, host="big")
    ranked = leaderboard.rank(leaderboard.load_points(tmp_path))
    assert [(p["host"], p["job"], p["rank"]) for p in ranked] == [("big", 2, 1), ("big", 0, 2), ("small", 1, 1)]
    text = leaderboard.to_markdown(ranked, tmp_path)
    assert "## Measured on big" in text and "## Measured on small" in text
    assert f"onnxbuild promote {tmp_path / '2'}" in text  # the host with the most points


def test_leaderboard_with_no_passing_point_recommends_nothing(tmp_path):
    _point(tmp_path / "0", 0, ["quantization=none"], 3.0, "gates failed", "max_p50_ms")
    text = leaderboard.write_leaderboard(tmp_path).read_text()
    assert "nothing to recommend" in text and "onnxbuild promote" not in text


def test_leaderboard_of_an_empty_folder_is_none(tmp_path):
    assert leaderboard.write_leaderboard(tmp_path) is None


def test_promote_refuses_failed_and_gate_failed_points(tmp_path):
    from pipeline.promote import check_point

    _point(tmp_path / "0", 0, ["quantization=none"], 3.0, "gates failed", "min_cosine 0.98 < 0.99")
    _point(tmp_path / "1", 1, ["quantization=none"], None, "failed", "quantize stage failed: boom")
    with pytest.raises(ConfigError, match=r"missed its gates: min_cosine 0.98 < 0.99 \(--allow-failed"):
        check_point(tmp_path / "0", allow_failed=False)
    with pytest.raises(ConfigError, match="failed: quantize stage failed: boom"):
        check_point(tmp_path / "1", allow_failed=False)
    assert check_point(tmp_path / "0", allow_failed=True) == ["promoted although it missed its gates: min_cosine 0.98 < 0.99"]


def test_unreadable_point_files_are_one_line_and_never_ranked(tmp_path):
    from pipeline.promote import check_point

    _point(tmp_path / "0", 0, ["quantization=none"], 3.0)
    _point(tmp_path / "1", 1, ["quantization=dynamic_int8"], 1.0)
    (tmp_path / "1" / POINT_FILE).write_text("{truncated")
    with pytest.raises(ConfigError, match=r"1/point.json.*unreadable point.json .*not promoted"):
        check_point(tmp_path / "1", allow_failed=True)
    (tmp_path / "1" / POINT_FILE).write_text("[]")
    with pytest.raises(ConfigError, match="point.json is not a JSON object"):
        check_point(tmp_path / "1", allow_failed=False)
    ranked = leaderboard.rank(leaderboard.load_points(tmp_path))
    assert [(p["job"], p["rank"]) for p in ranked] == [(0, 1), ("1", None)]  # the fast one is unreadable
    assert ranked[1]["status"] == "failed: unreadable point.json"
    assert leaderboard.best(ranked) == [ranked[0]]


def test_ties_are_judged_against_the_first_point_of_a_rank_not_chained(tmp_path):
    for job, p50 in enumerate((1.0, 1.08, 1.16)):  # each within 10 % of the previous, the last not of the first
        _point(tmp_path / str(job), job, [f"quantization=q{job}"], p50, interval=(0.9, 1.1))
    ranked = leaderboard.rank(leaderboard.load_points(tmp_path))
    assert [(p["job"], p["rank"], p["tie"]) for p in ranked] == [(0, 1, True), (1, 1, True), (2, 3, False)]


def test_a_misspelt_search_space_or_an_unwritable_folder_is_one_line(sweep_conf, tmp_path):
    (sweep_conf / "hparams_search").mkdir(exist_ok=True)
    (sweep_conf / "hparams_search" / "digits_int8.yaml").write_text("# @package _global_\n")
    # hparams_search is optional in sweep.yaml: Hydra alone would run the defaults instead of a search
    with pytest.raises(ConfigError, match=r"key 'hparams_search': no search space 'digits_int88' .*digits_int8"):
        sweep.check_search(["-m", "hparams_search=digits_int88"], sweep_conf)
    sweep.check_search(["-m", "hparams_search=digits_int8"], sweep_conf)
    sweep.check_search(["-m", "quantization=none"], sweep_conf)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create the sweep folder"):
        with sweep.sweep_lock(blocker / "sweep"):
            pass
    with pytest.raises(ConfigError, match="cannot create a sweep folder"):
        sweep.claim_new_dir(blocker)


def test_a_gate_failed_point_returns_the_worst_score_never_its_latency():
    ok = {"status": "ok", "objective": {"metric": "latency_ms.p50", "direction": "minimize", "value": 1.5}}
    assert sweep.returned(ok) == 1.5
    assert sweep.returned({**ok, "status": "gates failed"}) == math.inf
    up = {"status": "gates failed", "objective": {"metric": "accuracy.top1", "direction": "maximize", "value": 0.9}}
    assert sweep.returned(up) == -math.inf
    assert math.isnan(sweep.returned({"status": "failed", "objective": None}))
