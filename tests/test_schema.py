"""The project schema: unknown keys, wrong types, unknown names and bad shapes name the key and the choices."""

import pytest

from pipeline.errors import ConfigError
from pipeline.schema import InputSpec, parse_shape, validate_model, validate_project

MODEL = {
    "framework": "torch",
    "factory": {"_target_": "pipeline.data.sample_inputs"},
    "watch": "pipeline",
    "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}],
}
BUILD = {
    "model": "m",
    "passes": [{"name": "shape_inference", "params": {}}],
    "quantization": {"name": "none"},
    "target": {"name": "cpu", "threads": 1},
}


def project(**build_changes):
    return {"models": {"m": dict(MODEL)}, "builds": {"b": {**BUILD, **build_changes}}}


def err(fn, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)  # one line
    return info.value


@pytest.mark.parametrize(
    "text,expected",
    [
        ("[batch, 3, 224, 224]", ("batch", 3, 224, 224)),
        (["batch", "seq"], ("batch", "seq")),
        ("[]", ()),
    ],
)
def test_parse_shape(text, expected):
    assert parse_shape(text) == expected


@pytest.mark.parametrize("bad", ["batch, 3", "[batch, 3", "[0, 3]", "[-1, 3]", "[3.5]", "[bat ch]", 7])
def test_bad_shape_strings(bad):
    with pytest.raises(ValueError, match="bad"):
        parse_shape(bad)


def test_bad_shape_in_recipe_names_key():
    data = dict(MODEL, inputs=[{"name": "input", "shape": "[batch, 3"}])
    e = err(validate_model, data, "models.m", "conf/model/m.yaml")
    assert e.key == "models.m.inputs[0].shape"
    assert "conf/model/m.yaml" in str(e)


def test_unknown_key_lists_valid_keys():
    e = err(validate_model, dict(MODEL, exprot={}), "models.m", None)
    assert e.key == "models.m.exprot"
    assert "export" in e.choices and "inputs" in e.choices


def test_nested_unknown_key_lists_nested_choices():
    e = err(validate_model, dict(MODEL, export={"opste": 17}), "models.m", None)
    assert e.key == "models.m.export.opste"
    assert "opset" in e.choices


def test_wrong_type_and_literal_choices():
    e = err(validate_model, dict(MODEL, export={"exporter": "onnxscript"}), "models.m", None)
    assert e.key == "models.m.export.exporter"
    assert "dynamo" in str(e) and "torchscript" in str(e)
    e = err(validate_model, dict(MODEL, inputs=[{"name": "x", "dtype": "float64", "shape": [1]}]), "models.m", None)
    assert e.key == "models.m.inputs[0].dtype"


def test_factory_that_cannot_be_imported():
    e = err(validate_model, dict(MODEL, factory={"_target_": "no_such_pkg.models.Net"}), "models.m", None)
    assert e.key.startswith("models.m.factory")
    assert "no_such_pkg.models" in str(e)


def test_symbolic_dim_needs_a_value():
    data = dict(MODEL, inputs=[{"name": "x", "shape": ["batch", "seq"]}])
    e = err(validate_model, data, "models.m", None)
    assert "seq" in str(e)


def test_framework_consistency():
    e = err(validate_model, {"framework": "onnx", "watch": "x"}, "models.m", None)
    assert "needs 'path'" in str(e)
    e = err(validate_model, dict(MODEL, export={"exporter": "dynamo", "opset": 13}), "models.m", None)
    assert "opset 18" in str(e)


def test_input_range_must_not_be_empty():
    with pytest.raises(ValueError, match="empty"):
        InputSpec(name="x", shape=[1], range=(2.0, 1.0))
    assert InputSpec(name="x", shape=[1], range=(1.0, 1.0)).range == (1.0, 1.0)  # a constant range


def test_scalar_and_constant_inputs():
    sr = InputSpec(name="sr", dtype="int64", shape=[], batch_axis=None, value=16000)
    assert sr.constant and sr.shape == ()
    with pytest.raises(ValueError, match="batch_axis: null"):
        InputSpec(name="sr", dtype="int64", shape=[])
    with pytest.raises(ValueError, match="outside the shape"):
        InputSpec(name="state", shape=[2, 1, 128], batch_axis=3)
    assert InputSpec(name="state", shape=[2, "batch", 128], batch_axis=1).batch_axis == 1


def test_valid_project():
    proj = validate_project(project())
    build = proj.builds["b"]
    assert build.target.name == "cpu" and build.target.params.threads == 1
    assert build.quantization.name == "none"
    assert proj.models["m"].inputs[0].shape == ("batch", 1, 8, 8)


def test_unknown_pass_lists_passes():
    e = err(validate_project, project(passes=[{"name": "shape_inferense"}]))
    assert e.key == "builds.b.passes[0].name"
    assert "shape_inference" in e.choices and "onnxoptimizer" in e.choices


def test_unknown_quantizer_and_target_list_choices():
    e = err(validate_project, project(quantization={"name": "nonexistent"}))
    assert e.key == "builds.b.quantization.name"
    assert {"none", "dynamic_int8", "static_int8"} <= set(e.choices)
    e = err(validate_project, project(target={"name": "tpu"}))
    assert e.key == "builds.b.target.name" and "cpu" in e.choices


def test_bad_target_value_names_key():
    e = err(validate_project, project(target={"name": "cpu", "threads": "abc"}))
    assert e.key == "builds.b.target.threads"
    assert "'abc'" in str(e)


def test_unknown_model_reference():
    e = err(validate_project, project(model="nope"))
    assert e.key == "builds.b.model" and e.choices == ["m"]


def test_source_file_is_named():
    e = err(validate_project, project(target={"name": "cpu", "thread": 2}), lambda key: "conf/recipe/b.yaml")
    assert str(e).startswith("conf/recipe/b.yaml, key 'builds.b.target.thread'")
    assert "threads" in e.choices


def test_unknown_top_level_key():
    e = err(validate_project, {**project(), "bulids": {}})
    assert e.key == "bulids"


def test_custom_metric_names_cannot_shadow_built_in_ones():
    from pipeline.schema import MetricSpec

    with pytest.raises(ValueError, match=r"built-in metric names: a gate on them would read the built-in figure"):
        MetricSpec.model_validate({"_target_": "pipeline.data.digits.load", "provides": ["iou_min", "cer"]})
    assert MetricSpec.model_validate({"_target_": "pipeline.data.digits.load", "provides": ["cer"]}).provides == ["cer"]


@pytest.mark.parametrize("name", [".", "..", "a b", "a/b", "é", "", "x\ny", "a:b"])
def test_build_and_model_names_are_folder_safe(name):
    data = project()
    data["builds"] = {name: data["builds"]["b"]}
    e = err(validate_project, data)
    assert "build name" in str(e) and "letters, digits" in str(e)
    data = project()
    data["models"] = {name: data["models"]["m"]}
    assert "model name" in str(err(validate_project, data))


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"evaluate": {"runs": 10**23}}, "builds.b.evaluate.runs"),
        ({"evaluate": {"runs": 1e23}}, "builds.b.evaluate.runs"),
        ({"evaluate": {"warmup": 10**6}}, "builds.b.evaluate.warmup"),
        ({"evaluate": {"batch_size": 10**6}}, "builds.b.evaluate.batch_size"),
        ({"evaluate": {"gates": {"min_cosine": float("nan")}}}, "builds.b.evaluate.gates.min_cosine"),
        ({"evaluate": {"gates": {"max_p50_ms": float("inf")}}}, "builds.b.evaluate.gates.max_p50_ms"),
        ({"evaluate": {"gates": {"min": {"cosine_min": float("nan")}}}}, "builds.b.evaluate.gates.min.cosine_min"),
        ({"evaluate": {"fidelity_samples": 300}}, "builds.b.evaluate.fidelity_samples"),  # the model holds 256
        ({"target": {"name": "cpu", "threads": 10**5}}, "builds.b.target.threads"),
        ({"target": {"name": "cpu", "provider_options": {"device_id": 0}}}, "builds.b.target.provider_options.device_id"),
        ({"evaluate": {"gates": {"min_cosine": 2}}}, "builds.b.evaluate.gates.min_cosine"),
        ({"evaluate": {"gates": {"min": {"cosine_min": 1.5}}}}, "builds.b.evaluate.gates.min.cosine_min"),
        ({"evaluate": {"gates": {"max_p50_ms": -1}}}, "builds.b.evaluate.gates.max_p50_ms"),
        ({"quantization": {"name": "static_int8", "calibration": {"num_samples": 10**12}}},
         "builds.b.quantization.calibration.num_samples"),
        ({"quantization": {"name": "auto", "calibration": {"num_samples": 10**12}}},
         "builds.b.quantization.calibration.num_samples"),
        ({"quantization": {"name": "auto", "final": {"runs": 1e23}}}, "builds.b.quantization.final.runs"),
        ({"quantization": {"name": "auto", "screen": {"fidelity_samples": 10**9}}},
         "builds.b.quantization.screen.fidelity_samples"),
    ],
)
def test_unbounded_non_finite_and_clipped_values_are_errors(changes, key):
    e = err(validate_project, project(**changes))
    assert e.key == key, str(e)


def test_export_dims_are_at_least_one():
    data = project()
    data["models"]["m"] = {**MODEL, "export": {"dims": {"batch": 0}}}
    assert err(validate_project, data).key == "models.m.export.dims.batch"


def test_project_block_is_part_of_the_schema():
    data = project()
    data["project"] = {"allow_targets": ["pipeline"], "allow_paths": []}
    assert validate_project(data).project.allow_targets == ["pipeline"]
    data["project"] = {"allow": ["x"]}
    assert err(validate_project, data).key == "project.allow"
