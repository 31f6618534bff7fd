"""transformer_optimize on a tiny BERT built here (2 layers, hidden 32, 2 heads, random weights, no
download), exported with the TorchScript exporter the way the torch source does it."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.errors import ConfigError
from pipeline.onnx_utils import save_model
from pipeline.passes.attention_heads import attention_softmaxes, detect_heads
from pipeline.schema import validate_pass

HEADS, HIDDEN, LAYERS, SEQ, VOCAB = 2, 32, 2, 16, 64
NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def export_tiny_bert(path: Path, attn_implementation: str, opset: int = 17) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    from pipeline.models.hf_transformers import Encoder
    from pipeline.sources.torch_source import NamedInputs

    config = BertConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=64, max_position_embeddings=32, attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    model = NamedInputs(Encoder(BertModel(config)).eval(), NAMES).eval()
    args = tuple(torch.from_numpy(a) for a in feeds(batch=2).values())
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notices
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, args, str(path), input_names=NAMES, output_names=["last_hidden_state"], opset_version=opset,
            dynamo=False, dynamic_axes={n: {0: "batch", 1: "seq"} for n in NAMES},
        )
    return path


def feeds(batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Right-padded token ids: sample i keeps SEQ - 3*i real tokens."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(batch, SEQ)).astype(np.int64)
    lengths = np.array([SEQ - 3 * i for i in range(batch)])
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def run(path: Path, x: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: x[n] for n in names})[0]


@pytest.fixture(scope="module")
def eager_bert(tmp_path_factory) -> Path:
    return export_tiny_bert(tmp_path_factory.mktemp("eager") / "model.onnx", "eager")


@pytest.fixture(scope="module")
def sdpa_bert(tmp_path_factory) -> Path:
    return export_tiny_bert(tmp_path_factory.mktemp("sdpa") / "model.onnx", "sdpa")


def test_eager_export_fuses_attention_and_keeps_outputs(eager_bert, run_pass):
    out, rec = run_pass("transformer_optimize", eager_bert)
    info = rec["info"]
    assert rec["changed"]
    assert info["fused_ops"]["Attention"] == {"before": 0, "after": LAYERS}
    assert info["fusions_applied"]["Attention"] == LAYERS
    assert info["fusions_applied"]["SkipLayerNormalization"] > 0
    assert info["attention_fused"] == LAYERS and "note" not in info
    assert (info["num_heads"], info["hidden_size"], info["heads_from"]) == (HEADS, HIDDEN, "graph")
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "Softmax" not in ops and "Attention" in ops
    x = feeds()
    np.testing.assert_allclose(run(out, x), run(eager_bert, x), atol=1e-4, rtol=1e-4)


def test_fused_model_quantizes_dynamically_and_loads(eager_bert, run_pass, tmp_path):
    from pipeline.quantization.base import QuantContext
    from pipeline.quantization.dynamic import DynamicInt8

    fused, _ = run_pass("transformer_optimize", eager_bert)
    dst = tmp_path / "q" / "model.onnx"
    dst.parent.mkdir()
    work = tmp_path / "qwork"
    work.mkdir()
    info = DynamicInt8().run(
        fused, dst, DynamicInt8.Params(), QuantContext(model_spec=None, log=logging.getLogger("t"), work_dir=work)
    )
    assert info["default_tensor_type"] == "float"
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert {"QAttention", "MatMulInteger"} <= ops
    x = feeds()
    a, b = run(dst, x), run(fused, x)
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cos.min() > 0.95


def _session_ops(path: Path, tmp_path: Path, config: dict[str, str]) -> set[str]:
    """Op types of the graph ONNX Runtime runs (level all, with these session config entries)."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / f"session{len(config)}.onnx")
    for key, value in config.items():
        so.add_session_config_entry(key, value)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}


def test_lean_fusions_quantize_and_the_session_can_keep_layer_norm_unfused(eager_bert, run_pass, tmp_path):
    """minilm_auto's transformer variant: Attention fused (QAttention once quantized), LayerNormalization +
    Add and Gelu left alone; its target keeps ONNX Runtime from fusing SkipLayerNormalization at load."""
    from pipeline.quantization.base import QuantContext
    from pipeline.quantization.dynamic import DynamicInt8

    lean, rec = run_pass(
        "transformer_optimize", eager_bert, options={"enable_skip_layer_norm": False, "enable_bias_gelu": False}
    )
    ops = {n.op_type for n in onnx.load(str(lean)).graph.node}
    assert rec["info"]["attention_fused"] == LAYERS
    assert "LayerNormalization" in ops and not {"SkipLayerNormalization", "BiasGelu"} & ops
    dst = tmp_path / "q" / "model.onnx"
    dst.parent.mkdir()
    DynamicInt8().run(
        lean, dst, DynamicInt8.Params(), QuantContext(model_spec=None, log=logging.getLogger("t"), work_dir=tmp_path)
    )
    assert "QAttention" in {n.op_type for n in onnx.load(str(dst)).graph.node}
    # at level all the session fuses Add + LayerNormalization itself, unless told not to
    tuned = {"optimization.disable_specified_optimizers": "SkipLayerNormFusion", "session.set_denormal_as_zero": "1"}
    fixed = tmp_path / "fixed.onnx"  # static shapes, as ORT's fusion needs them (batch may stay symbolic)
    model = onnx.load(str(dst))
    for value in model.graph.input:
        value.type.tensor_type.shape.dim[1].dim_value = SEQ
    onnx.save(model, str(fixed))
    assert "SkipLayerNormalization" in _session_ops(fixed, tmp_path, {})
    kept = _session_ops(fixed, tmp_path, tuned)
    assert "SkipLayerNormalization" not in kept and "LayerNormalization" in kept
    x = feeds()
    a, b = run(dst, x), run(lean, x)
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cos.min() > 0.95


def test_sdpa_export_does_not_fuse_attention_and_says_why(sdpa_bert, run_pass, caplog):
    with caplog.at_level(logging.WARNING):
        out, rec = run_pass("transformer_optimize", sdpa_bert)
    info = rec["info"]
    assert info["attention_fused"] == 0 and info["attention_softmax_before"] == LAYERS
    assert "Attention" not in info["fusions_applied"]
    assert "SDPA" in info["note"] and "attn_implementation: eager" in info["note"] and "torchscript" in info["note"]
    assert any("attention did not fuse" in r.getMessage() for r in caplog.records)
    x = feeds()
    np.testing.assert_allclose(run(out, x), run(sdpa_bert, x), atol=1e-4, rtol=1e-4)


def test_non_transformer_is_left_unchanged(cnn, run_pass):
    out, rec = run_pass("transformer_optimize", cnn)
    assert rec["info"]["fusions_applied"] == "none"
    assert not rec["changed"]
    assert out.read_bytes() == cnn.read_bytes()


def test_heads_detected_from_the_torchscript_export(eager_bert):
    model = onnx.load(str(eager_bert))
    heads = detect_heads(model)
    assert (heads.num_heads, heads.hidden_size) == (HEADS, HIDDEN)
    assert heads.votes == 3 * LAYERS  # Q, K and V of every layer agree
    assert attention_softmaxes(model) == LAYERS


def _projection_graph(shape: list[int], hidden: int = 8) -> onnx.ModelProto:
    """X [1, 3, hidden] -> MatMul(W [hidden, hidden]) -> Add(b) -> Reshape(shape) -> Transpose."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(hidden, hidden)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(hidden, np.float32), "b"),
        numpy_helper.from_array(np.array(shape, np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["q"]),
        helper.make_node("Add", ["q", "b"], ["qb"]),
        helper.make_node("Reshape", ["qb", "shape"], ["heads"]),
        helper.make_node("Transpose", ["heads"], ["y"], perm=[0, 2, 1, 3]),
    ]
    graph = helper.make_graph(
        nodes, "proj", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "shape, expected",
    [([0, 0, 2, 4], (2, 8)), ([1, 3, -1, 4], (2, 8)), ([0, 0, 4, -1], (4, 8)), ([0, 0, 8], None), ([0, 0, 3, 4], None)],
)
def test_heads_from_hand_made_projections(shape, expected):
    # hidden 8: [.., 2, 4] -> 2 heads; [.., -1, 4] -> 8 / 4 = 2; [.., 4, -1] -> 4; no head axis or
    # 3 x 4 != 8 -> nothing detected
    found = detect_heads(_projection_graph(shape))
    assert (None if found is None else (found.num_heads, found.hidden_size)) == expected


def _attention_without_head_reshape(path: Path) -> Path:
    """Single-head attention written out by hand: Softmax(Q K^T) V with no Reshape into heads."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), n) for n in ("wq", "wk", "wv")]
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8])], inits,
    )
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_undetectable_heads_ask_to_declare_them(tmp_path, run_pass):
    src = _attention_without_head_reshape(tmp_path / "attn" / "model.onnx")
    assert attention_softmaxes(onnx.load(str(src))) == 1
    with pytest.raises(ConfigError, match="declare them") as err:
        run_pass("transformer_optimize", src)
    assert "num_heads" in str(err.value)


def test_declared_heads_are_used(eager_bert, run_pass):
    _, rec = run_pass("transformer_optimize", eager_bert, num_heads=HEADS, hidden_size=HIDDEN)
    assert rec["info"]["heads_from"] == "declared" and rec["info"]["attention_fused"] == LAYERS


def test_fusion_options_reach_the_optimizer(eager_bert, run_pass):
    _, rec = run_pass("transformer_optimize", eager_bert, options={"enable_attention": False})
    assert rec["info"]["attention_fused"] == 0 and "note" in rec["info"]


@pytest.mark.parametrize(
    "params, words",
    [
        ({"model_type": "bertt"}, ["bertt", "bert", "gpt2"]),
        ({"options": {"enable_gelu_aproximation": False}}, ["enable_gelu_aproximation", "enable_gelu_approximation"]),
        ({"options": {"enable_attention": 1}}, ["true/false"]),
        ({"opt_level": 2}, ["opt_level"]),
        ({"num_heads": -1}, ["num_heads"]),
    ],
)
def test_bad_params_name_the_key_and_choices(params, words):
    with pytest.raises(ConfigError) as err:
        validate_pass({"name": "transformer_optimize", "params": params}, "passes[0]")
    for word in words:
        assert word in str(err.value)


def _layer_norm_model(path: Path, opset: int) -> Path:
    """Linear -> LayerNorm -> Linear exported with the TorchScript exporter (LayerNorm decomposed below 17)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.LayerNorm(HIDDEN), torch.nn.Linear(HIDDEN, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(2, HIDDEN),), str(path), input_names=["x"],
                          output_names=["y"], opset_version=opset, dynamo=False)
    return path


def test_below_opset_17_layer_norm_is_not_fused_into_an_op_the_opset_lacks(tmp_path, run_pass):
    """ONNX LayerNormalization exists from opset 17: at opset 13 the pass skips that fusion and says so
    (the model stays valid); at opset 17 it fuses."""
    old = _layer_norm_model(tmp_path / "ln13.onnx", 13)
    out, rec = run_pass("transformer_optimize", old)
    assert "opset 13" in rec["info"]["layer_norm"] and "LayerNormalization" not in str(rec["info"]["fusions_applied"])
    onnx.checker.check_model(onnx.load(str(out)))
    x = {"x": np.random.default_rng(0).normal(size=(2, HIDDEN)).astype(np.float32)}
    np.testing.assert_allclose(run(out, x), run(old, x), atol=1e-5)
    new = _layer_norm_model(tmp_path / "ln17.onnx", 17)
    _, rec17 = run_pass("transformer_optimize", new)
    assert "layer_norm" not in rec17["info"]
