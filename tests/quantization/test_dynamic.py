import onnx
import pytest

from pipeline.errors import ConfigError


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("weight_type", ["int8", "uint8"])
def test_quantizes_conv_and_matmul(cnn, quantize, x, ort_out, close_to, op_hist, per_channel, weight_type):
    out, info = quantize(cnn, {"name": "dynamic_int8", "per_channel": per_channel, "weight_type": weight_type})
    hist = op_hist(out)
    assert hist.get("ConvInteger") == 2 and hist.get("DynamicQuantizeLinear", 0) >= 1
    assert info["per_channel"] is per_channel and info["weight_type"] == weight_type
    assert info["preprocess"] == {"symbolic_shape_inference": True}
    close_to(ort_out(out, x), ort_out(cnn, x))


def test_excluded_node_stays_float(cnn, quantize, x, ort_out, close_to, op_hist):
    first_conv = next(n.name for n in onnx.load(str(cnn)).graph.node if n.op_type == "Conv")
    out, info = quantize(cnn, {"name": "dynamic_int8", "nodes_to_exclude": [first_conv]})
    model = onnx.load(str(out))
    assert first_conv in {n.name for n in model.graph.node if n.op_type == "Conv"}
    assert op_hist(out)["ConvInteger"] == 1
    close_to(ort_out(out, x), ort_out(cnn, x))


def test_excluded_op_type(cnn, quantize, op_hist):
    out, info = quantize(cnn, {"name": "dynamic_int8", "op_types_to_exclude": ["Conv"]})
    assert "ConvInteger" not in op_hist(out) and op_hist(out)["Conv"] == 2
    assert "Conv" not in info["op_types_to_quantize"]


def test_unknown_node_name_lists_graph_nodes(cnn, quantize):
    with pytest.raises(ConfigError) as err:
        quantize(cnn, {"name": "dynamic_int8", "nodes_to_exclude": ["conv_typo"]})
    text = str(err.value)
    assert "builds.b.quantization.nodes_to_exclude" in text and "conv_typo" in text
    conv = next(n.name for n in onnx.load(str(cnn)).graph.node if n.op_type == "Conv")
    assert conv in text


def test_op_type_typo(cnn, quantize):
    with pytest.raises(ConfigError, match=r"op_types_to_exclude.*'conv' is not an ONNX op type.*Conv"):
        quantize(cnn, {"name": "dynamic_int8", "op_types_to_exclude": ["conv"]})


def test_graph_with_contrib_ops_gets_default_tensor_type(cnn, tmp_path, quantize, x, ort_out, close_to):
    """ORT's extended optimization writes com.microsoft fused ops (FusedConv, ...)."""
    import onnxruntime as ort

    fused = tmp_path / "fused" / "model.onnx"
    fused.parent.mkdir()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(fused)
    ort.InferenceSession(str(cnn), opts, providers=["CPUExecutionProvider"])
    assert any(n.domain == "com.microsoft" for n in onnx.load(str(fused)).graph.node)
    out, info = quantize(fused, {"name": "dynamic_int8", "preprocess": False})
    assert info["default_tensor_type"] == "float"
    close_to(ort_out(out, x), ort_out(cnn, x))


def test_external_data_in_and_out(cnn_external, quantize, x, ort_out, close_to):
    out, info = quantize(cnn_external, {"name": "dynamic_int8"})
    assert info["external_data"] and (out.parent / "model.onnx.data").exists()
    close_to(ort_out(out, x), ort_out(cnn_external, x))
