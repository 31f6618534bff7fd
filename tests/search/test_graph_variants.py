"""The search's ``transformer`` graph variant runs transformer_optimize with ``space.transformer_options``."""

from __future__ import annotations

import logging
import types

import onnx
import pytest

from pipeline.quantization.auto import AutoQuantization
from pipeline.search.run import Search
from tests.passes.test_transformer_optimize import export_tiny_bert


@pytest.fixture(scope="module")
def eager_bert(tmp_path_factory):
    return export_tiny_bert(tmp_path_factory.mktemp("eager") / "model.onnx", "eager")


def variants(src, work, options):
    """Search.graph_variants alone (no measurement): the graph variants and what was recorded."""
    search = Search.__new__(Search)
    search.src, search.work, search.log = src, work, logging.getLogger("t")
    search.params = AutoQuantization.Params(space={"graphs": ["passes", "transformer"], "transformer_options": options})
    search.ctx = types.SimpleNamespace(dims={"batch": 1, "seq": 16})
    search.graphs, search.graph_info = {"passes": src}, {}
    search.graph_variants()
    return search.graphs, search.graph_info


@pytest.mark.parametrize(
    "options, present, absent",
    [
        ({}, {"Attention", "SkipLayerNormalization"}, {"LayerNormalization"}),
        ({"enable_skip_layer_norm": False, "enable_bias_gelu": False}, {"Attention", "LayerNormalization"},
         {"SkipLayerNormalization", "BiasGelu"}),
    ],
)
def test_transformer_variant_follows_the_options(eager_bert, tmp_path, options, present, absent):
    graphs, info = variants(eager_bert, tmp_path, options)
    ops = {n.op_type for n in onnx.load(str(graphs["transformer"])).graph.node}
    assert present <= ops and not absent & ops
    assert info["transformer"]["pass"] == "transformer_optimize"
    assert info["transformer"]["info"]["params"]["options"] == options  # recorded in search.json
