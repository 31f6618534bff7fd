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
