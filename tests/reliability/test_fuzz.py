"""Property-based fuzzing of overrides and recipes: every bad input gets one line, no traceback, and
params.yaml stays byte-identical (>= 300 generated inputs per run, on a tiny project of its own)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.reliability.bad_inputs import bad_overrides, bad_recipes, run_compose, run_recipe
from tests.reliability.tiny import make_project

SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("fuzz") / "proj")
    (root / "dvc.yaml").write_text("stages: {}\n")
    return root


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    from pipeline.compose import main

    assert main([]) == 0
    return project


def _check(kind, inputs, out):
    assert not out.traceback, f"{kind} {inputs!r}: traceback\n{out.err}"
    assert out.code == 2, f"{kind} {inputs!r} was accepted (exit {out.code}): {out.err}"
    assert out.one_line, f"{kind} {inputs!r}: not one line\n{out.err}"
    assert not out.params_changed, f"{kind} {inputs!r}: params.yaml changed"


@pytest.mark.slow
@settings(max_examples=220, **SETTINGS)
@given(case=bad_overrides())
def test_every_bad_override_is_one_line_and_leaves_params_untouched(in_project, case):
    kind, overrides = case
    _check(kind, overrides, run_compose(in_project, overrides))


@pytest.mark.slow
@settings(max_examples=100, **SETTINGS)
@given(case=bad_recipes())
def test_every_bad_recipe_is_one_line_and_leaves_params_untouched(in_project, case):
    kind, text = case
    out = run_recipe(in_project, text)
    _check(kind, text, out)
    if kind in ("syntax", "duplicate", "indent", "tab"):
        assert "conf/recipe/tiny_fp32.yaml:" in out.err, out.err  # FILE:LINE
