"""Task-true fidelity (pipeline.evaluate.task_metrics) on hand-made outputs with known answers."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pipeline.errors import ConfigError
from pipeline.evaluate.fidelity import per_sample_cosine
from pipeline.evaluate.gates import TASK_METRICS
from pipeline.evaluate.task_metrics import TASK_FIDELITY, check_task_fits, task_fidelity
from pipeline.schema import TASKS, FidelitySpec, ModelSpec

SPEC = FidelitySpec()


def _one_hot_scores(classes: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes)[classes] + 0.01 * np.arange(n_classes)  # argmax = the class


# --- classification ---------------------------------------------------------------------------


def test_sequence_worst_sample_agrees_on_5_of_8_positions():
    rng = np.random.default_rng(0)
    ref_classes = rng.integers(0, 3, size=(4, 8))
    build_classes = ref_classes.copy()
    build_classes[2, [1, 4, 6]] = (build_classes[2, [1, 4, 6]] + 1) % 3  # sample 2: 5 of 8 agree
    ref = {"probs": _one_hot_scores(ref_classes, 3)}
    out = {"probs": _one_hot_scores(build_classes, 3)}
    figures = task_fidelity("classification", ref, out, {}, SPEC, False)
    assert figures == {
        "task": "classification",
        "output": "probs",
        "top1_agreement": (3 * 8 + 5) / 32,  # 0.90625: the mean hides the broken line
        "top1_agreement_min": 0.625,
    }


def test_plain_classifier_has_one_position_per_sample():
    ref = {"y": _one_hot_scores(np.array([0, 1, 2, 3]), 4)}
    out = {"y": _one_hot_scores(np.array([0, 1, 2, 0]), 4)}
    figures = TASK_FIDELITY["classification"](ref, out, {}, SPEC, False)
    assert figures == {"top1_agreement": 0.75, "top1_agreement_min": 0.0}


def test_nonfinite_build_scores_never_agree():
    ref = {"y": _one_hot_scores(np.array([0, 1]), 3)}
    out = {"y": ref["y"].copy()}
    out["y"][1, 2] = np.nan
    assert TASK_FIDELITY["classification"](ref, out, {}, SPEC, False)["top1_agreement_min"] == 0.0


def test_fidelity_output_picks_the_declared_output():
    ref = {"aux": np.zeros((2, 3)), "scores": _one_hot_scores(np.array([0, 1]), 2)}
    out = {"aux": np.ones((2, 3)), "scores": _one_hot_scores(np.array([0, 0]), 2)}
    figures = task_fidelity("classification", ref, out, {}, FidelitySpec(output="scores"), False)
    assert figures["output"] == "scores" and figures["top1_agreement"] == 0.5
    with pytest.raises(ConfigError, match="output 'nope' is not one of") as err:
        task_fidelity("classification", ref, out, {}, FidelitySpec(output="nope"), False)
    assert err.value.key == "fidelity.output" and err.value.choices == ["aux", "scores"]


def test_stream_steps_are_positions():
    ref = {"y": _one_hot_scores(np.array([[0, 1, 1, 0], [1, 1, 1, 1]]), 2)}  # [samples, steps, classes]
    out = {"y": _one_hot_scores(np.array([[0, 1, 0, 0], [1, 1, 1, 1]]), 2)}
    figures = TASK_FIDELITY["classification"](ref, out, {}, SPEC, True)
    assert figures == {"top1_agreement": 7 / 8, "top1_agreement_min": 0.75}


# --- embedding --------------------------------------------------------------------------------


def _padded_embeddings():
    """[3 samples, 5 positions, 4 dims]; the last 2 positions are padding (mask 0) and differ."""
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(3, 5, 4))
    out = ref.copy()
    out[:, 3:] = rng.normal(size=(3, 2, 4))  # padding differs, real positions are identical
    mask = np.ones((3, 5), dtype=np.int64)
    mask[:, 3:] = 0
    return {"hidden": ref}, {"hidden": out}, {"attention_mask": mask}


def test_masked_mean_ignores_padding():
    ref, out, inputs = _padded_embeddings()
    spec = FidelitySpec(pooling="mean", mask_input="attention_mask")
    figures = task_fidelity("embedding", ref, out, inputs, spec, False)
    assert figures["embedding_cosine_min"] == pytest.approx(1.0, abs=1e-12)
    assert figures["embedding_cosine_mean"] == pytest.approx(1.0, abs=1e-12)
    flattened = per_sample_cosine(out["hidden"], ref["hidden"])
    assert flattened.max() < 0.99  # what the generic cosine sees
    unmasked = TASK_FIDELITY["embedding"](ref, out, inputs, FidelitySpec(pooling="mean"), False)
    assert unmasked["embedding_cosine_min"] < 1.0 - 1e-6  # padding included
    none = TASK_FIDELITY["embedding"](ref, out, inputs, FidelitySpec(pooling="none"), False)
    assert none["embedding_cosine_min"] == pytest.approx(flattened.min())


def test_cls_pooling_reads_position_0():
    ref, out, _ = _padded_embeddings()
    out["hidden"][:, 1] *= -1.0  # positions other than 0 changed
    figures = TASK_FIDELITY["embedding"](ref, out, {}, FidelitySpec(pooling="cls"), False)
    assert figures["embedding_cosine_min"] == pytest.approx(1.0, abs=1e-12)
    out["hidden"][0, 0] *= -1.0  # sample 0's CLS vector reversed: cosine -1
    figures = TASK_FIDELITY["embedding"](ref, out, {}, FidelitySpec(pooling="cls"), False)
    assert figures["embedding_cosine_min"] == pytest.approx(-1.0)
    assert figures["embedding_cosine_mean"] == pytest.approx(1 / 3)


def test_missing_mask_input_names_the_key():
    ref, out, _ = _padded_embeddings()
    with pytest.raises(ConfigError, match="mask input 'attention_mask'") as err:
        TASK_FIDELITY["embedding"](ref, out, {}, FidelitySpec(mask_input="attention_mask"), False)
    assert err.value.key == "fidelity.mask_input"


# --- detection / segmentation -----------------------------------------------------------------


def test_map_iou_is_exactly_one_half():
    ref = np.zeros((3, 1, 4, 4))
    out = np.zeros((3, 1, 4, 4))
    ref[0, 0, 0, :4] = 0.9  # 4 pixels on
    out[0, 0, 0, :2] = 0.8  # 2 of them: IoU 2 / 4
    out[0, 0, 3, 3] = 0.5  # exactly the threshold: off (> threshold)
    ref[1, 0, 1:3, 1:3] = 0.7
    out[1, 0, 1:3, 1:3] = 0.6  # same binary map: IoU 1
    # sample 2: both empty -> 1.0
    for task in ("detection", "segmentation"):
        figures = task_fidelity(task, {"map": ref}, {"map": out}, {}, SPEC, False)
        assert figures["iou_min"] == 0.5
        assert figures["iou_mean"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)


def test_threshold_is_declared():
    ref = np.full((2, 2, 2), 0.3)
    out = np.full((2, 2, 2), 0.3)
    out[0, 0, 0] = 0.1
    assert TASK_FIDELITY["detection"]({"m": ref}, {"m": out}, {}, FidelitySpec(threshold=0.5), False)["iou_min"] == 1.0
    low = TASK_FIDELITY["detection"]({"m": ref}, {"m": out}, {}, FidelitySpec(threshold=0.2), False)
    assert low["iou_min"] == 0.75


def test_nonfinite_map_has_nan_iou():
    ref = np.ones((2, 2, 2))
    out = ref.copy()
    out[1, 0, 0] = np.nan
    figures = TASK_FIDELITY["segmentation"]({"m": ref}, {"m": out}, {}, SPEC, False)
    assert np.isnan(figures["iou_min"])


# --- regression / other -----------------------------------------------------------------------


def test_relative_and_absolute_errors_per_sample():
    ref = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    out = np.array([[3.0, 4.5], [0.0, 0.0], [1.0, -0.2]])
    figures = TASK_FIDELITY["regression"]({"v": ref}, {"v": out}, {}, SPEC, False)
    assert figures["abs_err_max"] == pytest.approx(0.5)
    assert figures["abs_err_mean"] == pytest.approx((0.5 + 0.0 + 0.2) / 3)
    assert figures["rel_err_max"] == pytest.approx(0.2)  # 0.2 / 1
    assert figures["rel_err_mean"] == pytest.approx((0.1 + 0.0 + 0.2) / 3)  # 0.5 / 5, both zero -> 0


def test_relative_error_is_inf_when_only_the_reference_is_zero():
    ref = np.array([[0.0, 0.0], [1.0, 1.0]])
    out = np.array([[0.0, 0.1], [1.0, 1.0]])
    figures = TASK_FIDELITY["other"]({"v": ref}, {"v": out}, {}, SPEC, False)
    assert figures["rel_err_max"] == np.inf and figures["abs_err_max"] == pytest.approx(0.1)


# --- one place per fact -----------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_figure_names_are_the_gateable_fidelity_paths(task):
    shapes = {"classification": (4, 3), "embedding": (4, 5, 3)}
    ref = np.random.default_rng(2).random(shapes.get(task, (4, 3, 3)))
    figures = task_fidelity(task, {"o": ref}, {"o": ref * 1.01}, {}, SPEC, False)
    written = {f"fidelity.{name}" for name in figures}
    gateable = {path for path in TASK_METRICS[task].values() if path.startswith("fidelity.")}
    assert written == gateable | {"fidelity.task", "fidelity.output"}


# --- does the task fit the output -------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "shape", "stream", "key", "text"),
    [
        ("detection", (32, 2), False, "task", "output 'probs' has shape [32, 2] [samples, ...]: detection on a 2-class vector"),
        ("segmentation", (32, 1, 1), False, "task", "segmentation on a scalar per sample"),
        ("classification", (32, 1), False, "task", "needs class scores on the last axis (at least 2 classes)"),
        ("classification", (32,), False, "task", "output 'probs' has shape [32]"),
        ("classification", (32, 8), True, "task", "[32, 8] [samples, steps, ...]"),
        ("embedding", (32, 16), False, "fidelity.pooling", "set fidelity.pooling: none"),
    ],
)
def test_task_that_does_not_fit_is_one_line(task, shape, stream, key, text):
    with pytest.raises(ConfigError) as err:
        check_task_fits(task, SPEC, "probs", shape, stream)
    assert err.value.key == key
    assert text in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("task", "shape", "stream", "pooling"),
    [
        ("classification", (32, 10), False, "mean"),
        ("classification", (32, 25, 97), False, "mean"),
        ("classification", (32, 8, 2), True, "mean"),
        ("embedding", (32, 7, 16), False, "mean"),
        ("embedding", (32, 7, 16), False, "cls"),
        ("embedding", (32, 16), False, "none"),
        ("detection", (32, 1, 48, 48), False, "mean"),
        ("segmentation", (32, 5, 48), False, "mean"),
        ("detection", (32, 8, 3), True, "mean"),
        ("detection", (32, 48, 1, 1), True, "mean"),  # one probability per step: the steps are the map (a VAD)
        ("regression", (32, 1), False, "mean"),
        ("other", (32,), True, "mean"),
    ],
)
def test_fitting_outputs_pass(task, shape, stream, pooling):
    check_task_fits(task, FidelitySpec(pooling=pooling), "o", shape, stream)


def test_export_stage_names_model_output_and_shape(tmp_path):
    """A detection model whose output is a 2-class vector is refused at export, before anything is written."""
    from pipeline.stages.export import export_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])
    graph = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["probs"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    source = tmp_path / "source"
    source.mkdir()
    onnx.save_model(model, str(source / "model.onnx"))
    spec = ModelSpec.model_validate({
        "framework": "onnx", "path": "m.onnx", "watch": "m.onnx", "task": "detection",
        "inputs": [{"name": "x", "shape": "[batch, 2]"}], "reference": {"num_samples": 32},
    })
    out = tmp_path / "export"
    with pytest.raises(ConfigError) as err:
        export_model(spec, source, out, logging.getLogger("test"), name="det", source="params.yaml")
    text = str(err.value)
    assert text == (
        "params.yaml, key 'models.det.task': task 'detection' needs a map output (at least 2 axes of size > 1 "
        "per sample), but output 'probs' has shape [32, 2] [samples, ...]: detection on a 2-class vector"
    )
    assert not out.exists()


def test_trailing_unit_axes_after_the_classes_are_dropped():
    """A classifier whose scores are [N, classes, 1, 1] (squeezenet-like) reads as [N, classes]."""
    check_task_fits("classification", SPEC, "softmaxout_1", (32, 1000, 1, 1), False)
    ref = {"p": _one_hot_scores(np.array([0, 2, 1]), 3)[:, :, None, None]}
    out = {"p": _one_hot_scores(np.array([0, 2, 2]), 3)[:, :, None, None]}
    figures = TASK_FIDELITY["classification"](ref, out, {}, SPEC, False)
    assert figures == {"top1_agreement": 2 / 3, "top1_agreement_min": 0.0}


def test_headline_holds_the_task_figures_that_were_measured():
    from pipeline.evaluate.metrics import headline

    flat = headline({"fidelity": {"cosine_min": 0.95, "iou_min": 0.87, "iou_mean": 0.9}})
    assert flat == {"cosine_min": 0.95, "iou_min": 0.87, "iou_mean": 0.9}
    every = {name for figures in TASK_METRICS.values() for name, path in figures.items() if path.startswith("fidelity.")}
    nested = {"fidelity": {name: 0.5 for name in every}}
    assert every <= set(headline(nested))


def test_stream_embedding_pools_each_step_with_its_mask():
    """[samples, steps, positions, dim] with a [samples, steps, positions] mask: padding ignored per step."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(2, 3, 4, 2))
    out = ref.copy()
    mask = np.ones((2, 3, 4))
    mask[:, :, 2:] = 0
    out[:, :, 2:] += 5.0  # padding only
    spec = FidelitySpec(mask_input="m")
    check_task_fits("embedding", spec, "h", ref.shape, True)
    figures = TASK_FIDELITY["embedding"]({"h": ref}, {"h": out}, {"m": mask}, spec, True)
    assert figures["embedding_cosine_min"] == pytest.approx(1.0, abs=1e-12)
    out[1, 2, 0] = -out[1, 2, 0]  # one real position of the last step of sample 1 changes
    figures = TASK_FIDELITY["embedding"]({"h": ref}, {"h": out}, {"m": mask}, spec, True)
    assert figures["embedding_cosine_mean"] < 1.0 and figures["embedding_cosine_min"] < 1.0
    assert figures["embedding_cosine_mean"] == pytest.approx((1.0 + figures["embedding_cosine_min"]) / 2)


def test_channel_first_class_scores_need_class_axis():
    """[n, classes, h, w]: read along the last axis, every position would look unchanged."""
    from pipeline.evaluate.task_metrics import TASK_FIDELITY

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 5, 3, 3))
    out = ref.copy()
    out[:, 0] += 10.0  # class 0 now wins at every position
    spec = FidelitySpec(class_axis=1)
    figures = TASK_FIDELITY["classification"]({"o": ref}, {"o": out}, {}, spec, False)
    expected = float((ref.argmax(axis=1) == 0).mean())
    assert figures["top1_agreement"] == pytest.approx(expected)
    assert figures["top1_agreement"] < 1.0
