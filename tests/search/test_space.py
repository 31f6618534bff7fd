"""The search space's transformer_options: checked against transformer_optimize's own schema."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.search.space import Space


def test_transformer_options_default_to_the_optimizer_defaults():
    assert Space().transformer_options == {}


def test_known_transformer_options_pass_through():
    space = Space(transformer_options={"enable_skip_layer_norm": False, "enable_bias_gelu": False})
    assert space.transformer_options == {"enable_skip_layer_norm": False, "enable_bias_gelu": False}


@pytest.mark.parametrize(
    "options, words",
    [
        ({"enable_skip_layernorm": False}, ["enable_skip_layernorm", "enable_skip_layer_norm"]),
        ({"enable_skip_layer_norm": 0}, ["true/false"]),
    ],
)
def test_bad_transformer_options_name_the_valid_choices(options, words):
    with pytest.raises(ValidationError) as err:
        Space(transformer_options=options)
    text = str(err.value)
    assert "transformer_options" in text
    for word in words:
        assert word in text


def test_smoothed_candidates_exist_only_where_there_is_something_to_smooth():
    from pipeline.search.space import quantized_candidates

    space = Space(modes=["dynamic"], smoothing=[None, 0.7])
    transformer_like = quantized_candidates(space, ["passes"], {"passes": {"MatMul", "Softmax", "Add"}})
    assert [c.name for c in transformer_like] == ["dynamic-pc", "dynamic-pc-sq0.7"]
    assert transformer_like[1].settings()["smoothing"] == 0.7
    conv_only = quantized_candidates(space, ["passes"], {"passes": {"Conv", "Relu"}})
    assert [c.name for c in conv_only] == ["dynamic-pc"]
    # op types that leave out every smoothable op: nothing to smooth either
    only_conv = Space(modes=["dynamic"], smoothing=[None, 0.7], op_types=[["Conv"]])
    assert [c.name for c in quantized_candidates(only_conv, ["passes"], {"passes": {"Conv", "MatMul"}})] == [
        "dynamic-pc-Conv"
    ]
    # listed first, a strength still gives the plain candidate where there is nothing to smooth
    smoothed_first = Space(modes=["dynamic"], smoothing=[0.7, None])
    conv_only = quantized_candidates(smoothed_first, ["passes"], {"passes": {"Conv", "Relu"}})
    assert [(c.name, c.smoothing) for c in conv_only] == [("dynamic-pc", None)]


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5])
def test_smoothing_strength_outside_zero_one_is_refused(alpha):
    with pytest.raises(ValidationError) as err:
        Space(smoothing=[None, alpha])
    assert "smoothing" in str(err.value)
