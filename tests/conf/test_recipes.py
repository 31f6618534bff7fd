"""The framework's config groups and composition rules on the fixture project (tests/fixtures/project):
every recipe, model, group option and experiment composes and validates (Compose API). The user's own
conf/ is checked by `onnxbuild check` (pipeline/project_check.py), not here."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from pipeline.compose import BUILD_GROUPS, compose, group_options
from pipeline.schema import validate_project

CONF = Path(__file__).resolve().parents[1] / "fixtures" / "project" / "conf"
RECIPES = group_options(CONF, "recipe")
MODELS = group_options(CONF, "model")


@pytest.fixture(autouse=True)
def _clean_hydra():
    yield
    GlobalHydra.instance().clear()


def test_the_default_project_composes_and_validates():
    comp = compose([], CONF)
    assert set(comp.data["builds"]) >= {"cnn_fp32", "cnn_dynamic_int8", "cnn_static_int8"}
    assert comp.data["builds"]["cnn_static_int8"]["evaluate"]["gates"]["min_cosine"] == 0.9
    assert comp.data["builds"]["cnn_static_int8"]["quantization"]["calibration"]["num_samples"] == 32
    assert comp.data["builds"]["cnn_static_int8"]["quantization"]["format"] == "qdq"
    assert comp.data["builds"]["cnn_static_int8"]["quantization"]["per_channel"] is True
    frameworks = {m["framework"] for m in comp.data["models"].values()}
    assert frameworks == {"torch"}
    assert comp.data["models"]["tiny_mlp"]["factory"]["_target_"] == "fixturemodels.mlp.build"  # the project's own package


def _with_model(recipe: str) -> list[str]:
    """Overrides adding the recipe as build 'probe' (and its model, when the project does not declare it:
    an opt-in recipe whose model file has the model's name)."""
    import yaml

    model = yaml.safe_load((CONF / "recipe" / f"{recipe}.yaml").read_text())["model"]
    declared = compose([], CONF).data["models"]
    extra = [] if model in declared else [f"+model@models.{model}={model}"]
    return [*extra, f"+recipe@builds.probe={recipe}"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_as_a_build(recipe):
    comp = compose(_with_model(recipe), CONF)
    build = comp.data["builds"]["probe"]
    assert build["model"] in comp.data["models"]
    assert comp.source_of("builds.probe").endswith(f"conf/recipe/{recipe}.yaml")


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_hold_only_what_differs(recipe):
    """A recipe's own values must differ from what its defaults already give."""
    import yaml

    raw = yaml.safe_load((CONF / "recipe" / f"{recipe}.yaml").read_text())
    base = compose(_with_model(recipe), CONF).data["builds"]["probe"]
    plain_defaults = [d for d in raw["defaults"] if d != "_self_"]
    assert plain_defaults[0] == {"/build@_here_": "default"}
    for group in BUILD_GROUPS:
        if group in raw:  # values set in the recipe body must not merely repeat the option file
            option = next(
                (v for d in plain_defaults if isinstance(d, dict) for k, v in d.items() if k.endswith(f"/{group}@{group}")),
                "default" if group in ("passes", "evaluate") else ("none" if group == "quantization" else "cpu"),
            )
            # the base every recipe starts from (conf/build/default.yaml) with the recipe's option file only
            plain = compose(
                ["+build@builds.probe=default", "+builds.probe.model=digits_cnn",
                 f"{group}@builds.probe.{group}={option}"],
                CONF,
            )
            assert plain.data["builds"]["probe"][group] != base[group], f"{recipe}: '{group}' repeats {option}"


@pytest.mark.parametrize("model", MODELS)
def test_every_model_file_composes_and_lists_every_key_the_stages_read(model):
    # fidelity_samples 32: a model may hold as few reference samples (more would be a compose error)
    overrides = ["builds.probe.evaluate.fidelity_samples=32"]
    comp = compose([f"+model@models.probe={model}", "+recipe@builds.probe=cnn_fp32", "builds.probe.model=probe", *overrides], CONF)
    spec = comp.data["models"]["probe"]
    for key in ("framework", "factory", "path", "checkpoint", "inputs", "outputs", "task", "train",
                "export", "reference", "calibration", "watch"):
        assert key in spec, f"conf/model/{model}.yaml lacks '{key}' (write null when unused)"


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in BUILD_GROUPS for o in group_options(CONF, g)]
)
def test_every_group_option_composes_into_a_valid_build(group, option):
    comp = compose(["+recipe@builds.probe=cnn_fp32", f"{group}@builds.probe.{group}={option}"], CONF)
    validate_project(comp.data)


@pytest.mark.parametrize("experiment", group_options(CONF, "experiment"))
def test_every_experiment_composes(experiment):
    plain = compose([], CONF).data
    comp = compose([f"experiment={experiment}"], CONF)
    assert comp.data != plain
    assert set(comp.data["builds"]) == set(plain["builds"])


def test_group_options_that_the_task_names_exist():
    assert {"none", "dynamic_int8", "static_int8", "static_int8_qoperator"} <= set(group_options(CONF, "quantization"))
    assert {"cpu", "cpu_1thread"} <= set(group_options(CONF, "target"))
    assert {"none", "default"} <= set(group_options(CONF, "passes"))
    assert "default" in group_options(CONF, "evaluate")
    qop = compose(["+recipe@builds.probe=cnn_fp32", "quantization@builds.probe.quantization=static_int8_qoperator"], CONF)
    assert qop.data["builds"]["probe"]["quantization"]["format"] == "qoperator"
    one = compose(["+recipe@builds.probe=cnn_fp32", "target@builds.probe.target=cpu_1thread"], CONF)
    assert one.data["builds"]["probe"]["target"]["threads"] == 1


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in BUILD_GROUPS for o in group_options(CONF, g)])
def test_the_sweep_app_config_composes_with_group_options(group, option):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONF), version_base=None):
        cfg = hydra_compose("sweep", overrides=[f"{group}={option}"])
    assert set(BUILD_GROUPS) <= set(cfg) and "model" in cfg
