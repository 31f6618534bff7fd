import onnxruntime as ort
import pytest

from pipeline.errors import ConfigError
from pipeline.targets import TARGETS, get_target

MISSING = [name for name, cls in TARGETS.items() if cls.provider not in ort.get_available_providers()]


def test_every_target_declares_a_named_params_model():
    for name, cls in TARGETS.items():
        assert cls.name == name
        assert cls.Params().name == name
        assert cls.provider.endswith("ExecutionProvider")


@pytest.mark.parametrize("name", MISSING)
def test_missing_provider_is_a_clear_config_error(name, tiny_model):
    target = get_target(name)
    params = target.Params(provider_options={"device_id": 0})
    with pytest.raises(ConfigError) as err:
        target.check_available(params, key="builds.b.target.name")
    text = str(err.value)
    assert "key 'builds.b.target.name'" in text
    assert target.provider in text and "is not installed" in text
    assert "CPUExecutionProvider" in text  # lists what is installed
    path, _ = tiny_model
    with pytest.raises(ConfigError, match="is not installed"):
        target.session(path, params)


def test_cuda_provider_chain_falls_back_to_cpu():
    target = get_target("cuda")
    chain = target.providers(target.Params(provider_options={"device_id": 1}))
    assert chain == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]


def test_unknown_target_lists_choices():
    with pytest.raises(ConfigError) as err:
        get_target("gpu", key="builds.b.target.name")
    assert "unknown target 'gpu'" in str(err.value)
    assert "cpu" in str(err.value) and "cuda" in str(err.value)


def test_schema_validates_target_through_registry():
    from pipeline.schema import _select

    sel = _select("target", TARGETS, {"name": "openvino", "threads": 2}, "builds.b.target", "params.yaml")
    assert sel.params.threads == 2 and sel.name == "openvino"
    with pytest.raises(ConfigError) as err:
        _select("target", TARGETS, {"name": "cpu", "thread": 2}, "builds.b.target", "params.yaml")
    assert "builds.b.target.thread" in str(err.value) and "threads" in str(err.value)
