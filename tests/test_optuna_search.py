"""The Optuna search's pieces: the search space (Hydra sweep syntax, conditional parameters),
compose-time validation naming the bad key, a point's outcome (gate failures infeasible)."""

from __future__ import annotations

import pytest

from pipeline import optuna_search as search
from pipeline.errors import ConfigError


def test_space_parses_choices_ranges_intervals_and_conditions():
    space = search.parse_space({
        "quantization": "choice(none, static_int8)",
        "target.threads": "range(1, 3)",
        "quantization.calibration.percentile": "tag(log, interval(99.0, 99.999))",
        "quantization.calibration.method": {"values": "choice(minmax, entropy)", "when": {"quantization": "static_int8"}},
    })
    assert [(p.key, p.kind) for p in space] == [("quantization", "choice"), ("target.threads", "int"),
                                                ("quantization.calibration.percentile", "float"),
                                                ("quantization.calibration.method", "choice")]
    assert (space[1].low, space[1].high) == (1, 2)  # Hydra's range excludes its end
    assert space[2].log and space[3].when == {"quantization": ["static_int8"]}
    assert search.active(space[3], {"quantization": "static_int8"}) and not search.active(space[3], {"quantization": "none"})


def test_space_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"key 'hydra.sweeper.params.quantization.calibration.method'.*not an earlier"):
        search.parse_space({"quantization.calibration.method": {"values": "choice(a)", "when": {"quantization": "x"}}})
    with pytest.raises(ConfigError, match=r"key 'hydra.sweeper.params.target.threads'"):
        search.parse_space({"target.threads": "2"})


def test_validation_composes_every_candidate_and_names_the_failing_one():
    space = search.parse_space({"quantization": "choice(none, static_int8)",
                                "quantization.bogus": {"values": "choice(1, 2)", "when": {"quantization": "static_int8"}}})
    seen = []

    def compose(overrides):
        seen.append(overrides)
        if any(o.startswith("quantization.bogus") for o in overrides):
            raise KeyError("Could not override 'quantization.bogus'.\nKey 'bogus' is not in struct")
        return overrides

    with pytest.raises(ConfigError, match=r"conf/hparams_search/x.yaml, key 'hydra.sweeper.params.quantization.bogus'.*"
                                          r"quantization.bogus=1: .*Could not override 'quantization.bogus'"):
        search.validate_space(space, ["model=m"], compose, lambda cfg: None, "conf/hparams_search/x.yaml")
    assert seen[-1] == ["model=m", "quantization=static_int8", "quantization.bogus=1"]


def test_gate_failures_are_infeasible_and_failed_points_are_failed_trials():
    ok = {"status": "ok", "objective": {"value": 1.5}, "gate_failures": []}
    missed = {"status": "gates failed", "objective": {"value": 0.5}, "gate_failures": ["a", "b"]}
    assert search.outcome(ok) == ("complete", 1.5, 0.0)
    assert search.outcome(missed) == ("complete", 0.5, 2.0)
    assert search.outcome({"status": "failed", "error": "x"})[0] == "fail"
    assert search.outcome(None)[0] == "fail"


def test_an_unreadable_point_is_a_failed_trial(tmp_path):
    from pipeline.sweep import POINT_FILE

    assert search.read_point(tmp_path) is None
    (tmp_path / POINT_FILE).write_text("{truncated")
    assert search.outcome(search.read_point(tmp_path))[0] == "fail"
    (tmp_path / POINT_FILE).write_text('["not", "an", "object"]')
    assert search.read_point(tmp_path) is None


def test_search_loop_never_picks_an_infeasible_point_and_does_not_rebuild_repeats(tmp_path):
    import json

    space = search.parse_space({"q": "choice(fast_bad, slow_ok, mid_ok)"})
    value = {"fast_bad": 0.1, "slow_ok": 3.0, "mid_ok": 2.0}
    launched = []

    def launch(batch, start):
        out = []
        for i, overrides in enumerate(batch):
            q = overrides[-1].split("=")[1]
            launched.append(q)
            job = tmp_path / str(start + i)
            job.mkdir()
            failures = ["min_cosine"] if q == "fast_bad" else []
            (job / "point.json").write_text(json.dumps({"status": "gates failed" if failures else "ok",
                                                        "objective": {"value": value[q]}, "gate_failures": failures}))
            out.append(job)
        return out

    res = search.run_search(space, [], launch, lambda ret: ret, tmp_path, n_trials=8, n_jobs=2, direction="minimize",
                            n_startup_trials=4)
    assert len(res["trials"]) == 8 and len(launched) == len(set(launched)) <= 3
    assert res["best"]["overrides"] == ["q=mid_ok"] and res["best"]["constraint"] == 0
    assert json.loads((tmp_path / search.RESULTS).read_text())["best"]["value"] == 2.0


def test_the_shipped_search_spaces_compose_and_validate_on_the_framework_groups(fixture_conf):
    """Every conf/hparams_search/*.yaml, in the fixture project (same config groups): each candidate
    value composes and passes the schema."""
    import shutil
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from pipeline.schema import validate_project
    from pipeline.sweep import point_project

    root = Path(__file__).resolve().parents[1]
    shutil.copy2(root / "conf" / "sweep.yaml", fixture_conf / "sweep.yaml")
    shutil.copytree(root / "conf" / "hparams_search", fixture_conf / "hparams_search")
    files = sorted((fixture_conf / "hparams_search").glob("*.yaml"))
    assert files
    try:
        with initialize_config_dir(str(fixture_conf), version_base=None):
            for path in files:
                args = [f"hparams_search={path.stem}"]
                cfg = compose("sweep", overrides=args, return_hydra_config=True)
                assert cfg.hydra.sweeper._target_.endswith("OnnxbuildOptuna")
                space = search.parse_space(OmegaConf.to_container(cfg.hydra.sweeper.params), str(path))

                def check(c):
                    plain = OmegaConf.masked_copy(c, [k for k in c if k != "hydra"])
                    validate_project(point_project(plain, c.hydra.runtime.choices.model))

                search.validate_space(space, args, lambda o: compose("sweep", overrides=o, return_hydra_config=True),
                                      check, str(path))
    finally:
        GlobalHydra.instance().clear()
