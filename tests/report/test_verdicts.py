"""Verdicts, what to ship, the gates each build used and the task's fidelity columns."""

from __future__ import annotations

import pytest

from pipeline.report import write_report
from pipeline.report.collect import collect
from pipeline.report.markdown import gates_used
from pipeline.report.summary import COLUMNS, FIGURE_COLUMNS, row, task_figures
from pipeline.report.verdicts import DERIVED_NOTE, recommend, verdict_of

FAST = ("faster", "static_int8 build is 2.00x the fp32 export (noise 1.90-2.10x): faster beyond noise; gates pass")


@pytest.mark.parametrize(
    ("p50", "failures", "expected"),
    [
        (0.5, (), "faster"),  # 2.00x: beyond the assumed ±5% band
        (0.97, (), "not_faster"),  # 1.03x: within the band
        (1.25, (), "not_faster"),  # 0.80x: slower
        (0.5, ("fidelity.cosine_min 0.9 < min_cosine 0.99",), "fails_gates"),
    ],
)
def test_verdict_derived_for_old_metrics_files(make_metrics, p50, failures, expected):
    verdict, reason = verdict_of(make_metrics("b", "static_int8", p50, 0.999, failures=failures))
    assert verdict == expected and reason.endswith(f"({DERIVED_NOTE} and no noise interval, so ±5% is assumed)")
    if failures:
        assert failures[0] in reason


def test_recorded_verdict_and_measured_noise_are_used(make_metrics):
    recorded = make_metrics("b", "static_int8", 0.5, 0.999, verdict=("not_faster", "within noise"))
    assert verdict_of(recorded) == ("not_faster", "within noise")
    # measured noise interval straddling 1: 1.05x is not faster
    verdict, reason = verdict_of(make_metrics("b", "static_int8", 1 / 1.05, 0.999, interval=(0.97, 1.12)))
    assert verdict == "not_faster" and "noise 0.97-1.12x" in reason and "assumed" not in reason


def _rows(*builds):
    return [row(m["build"]["name"], m) for m in builds]


def test_ship_the_fastest_faster_build_never_a_slower_int8(make_metrics):
    table = _rows(
        make_metrics("fp32", "none", 1.0, 1.0, interval=(0.98, 1.02)),
        make_metrics("int8_slow", "dynamic_int8", 1.25, 0.999, interval=(0.78, 0.82)),
        make_metrics("int8_fast", "static_int8", 0.5, 0.999, verdict=FAST),
        make_metrics("int8_faster_gate_miss", "static_int8", 0.3, 0.9, failures=["fidelity.cosine_min 0.9 < min_cosine 0.99"],
                     interval=(3.2, 3.4)),
        make_metrics("fp16_a_bit_faster", "none", 0.8, 0.9999, interval=(1.2, 1.3)),
    )
    verdicts = {r["build"]: r["verdict"] for r in table}
    assert verdicts == {"fp32": "not_faster", "int8_slow": "not_faster", "int8_fast": "faster",
                        "int8_faster_gate_miss": "fails_gates", "fp16_a_bit_faster": "faster"}
    rec = recommend("m", table, fp32={"fp32"})
    assert rec.build == "int8_fast" and FAST[1] in rec.why and "`fp16_a_bit_faster`" in rec.why


def test_ship_by_speedup_when_latencies_come_from_other_hosts_or_batch_sizes(make_metrics):
    # the lower p50 was measured on a faster machine: it is not the faster build
    here = make_metrics("int8_here", "static_int8", 0.5, 0.999, interval=(1.9, 2.1))  # 2.0x here
    there = make_metrics("int8_there", "dynamic_int8", 0.4, 0.999, interval=(1.2, 1.3))
    there["environment"] = {**there["environment"], "host": {"id": "bigbox (Other CPU, 64 cores)"}}
    there["reference"] = {"latency_ms": {"p50": 0.5}}
    there["speedup"] = 1.25  # 1.25x against its own fp32 export, timed there
    fp32 = make_metrics("fp32", "none", 1.0, 1.0, interval=(0.98, 1.02))
    rec = recommend("m", _rows(fp32, here, there), fp32={"fp32"})
    assert rec.build == "int8_here" and "measured on different hosts" in rec.why and "`int8_there`" in rec.why

    batched = make_metrics("int8_b1", "dynamic_int8", 0.4, 0.999, interval=(1.2, 1.3))
    batched["speedup"] = 1.25
    big = make_metrics("int8_b8", "static_int8", 3.0, 0.999, interval=(2.9, 3.1))
    big["benchmark"] = {**big["benchmark"], "batch_size": 8}
    big["speedup"] = 3.0  # per call at batch 8: a higher p50, but three times its fp32 export at batch 8
    rec = recommend("m", _rows(fp32, batched, big), fp32={"fp32"})
    assert rec.build == "int8_b8" and "at different batch sizes" in rec.why

    alike = recommend("m", _rows(fp32, here, make_metrics("int8_b", "dynamic_int8", 0.6, 0.999, interval=(1.6, 1.8))),
                      fp32={"fp32"})
    assert alike.build == "int8_here" and "not compared" not in alike.why  # one host, one batch: by p50


def test_ship_fp32_when_no_build_is_faster(make_metrics):
    table = _rows(
        make_metrics("ppocr_fp32", "none", 1.0, 1.0, interval=(0.98, 1.02)),
        make_metrics("ppocr_int8", "static_int8", 1.2, 0.99, interval=(0.8, 0.86)),
    )
    rec = recommend("ppocr", table, fp32={"ppocr_fp32"})
    assert rec.build == "ppocr_fp32"
    assert "not_faster: `ppocr_fp32`, `ppocr_int8`" in rec.why
    # without a usable fp32 build there is nothing to ship, still not the slower int8
    assert recommend("ppocr", table[1:], fp32=set()).build is None


def test_summary_ship_line_and_verdict_column(project, make_metrics, tmp_path):
    project.model("cls").model("ocr")
    for name, model, quant in [("cls_fp32", "cls", "none"), ("cls_int8", "cls", "static_int8"),
                               ("ocr_fp32", "ocr", "none"), ("ocr_int8", "ocr", "static_int8")]:
        project.build(name, model, quant)
    project.metrics(make_metrics("cls_fp32", "none", 1.0, 1.0, model="cls", interval=(0.98, 1.02)))
    project.metrics(make_metrics("cls_int8", "static_int8", 0.5, 0.999, model="cls", verdict=FAST))
    project.metrics(make_metrics("ocr_fp32", "none", 1.0, 1.0, model="ocr", interval=(0.98, 1.02)))
    project.metrics(make_metrics("ocr_int8", "static_int8", 1.2, 0.99, model="ocr", interval=(0.8, 0.86)))
    text = write_report(project.metrics_dir, tmp_path / "r", project.params, project.logs).read_text()
    ship = text.split("## What to ship", 1)[1].split("\n## ", 1)[0]
    assert "- **cls**: ship `cls_int8` (cpu, 1 thread, 100 runs + 10 warm-up at batch 1): " in ship and "- **ocr**: ship `ocr_fp32` (cpu, 1 thread, 100 runs + 10 warm-up at batch 1): the fp32 build" in ship
    ocr_int8 = next(line for line in text.splitlines() if line.startswith("| ocr_int8"))
    assert ocr_int8.rstrip(" |").endswith("| not_faster") and "0.83× (0.80–0.86)" in ocr_int8
    assert "- `ocr_int8`: not_faster: static_int8 build is 0.83x" in text


def test_gates_used_names_metric_threshold_value_and_result(make_metrics):
    checked = {
        "min.iou_min": {"metric": "fidelity.iou_min", "threshold": 0.95, "value": 0.97, "passed": True},
        "max_abs_err": {"metric": "fidelity.max_abs_err", "threshold": 0.01, "value": 0.5, "passed": False},
        "min.recall": {"metric": "custom.recall", "threshold": 0.9, "value": None, "passed": False},
    }
    m = make_metrics("b", "static_int8", 0.5, 0.99, checked=checked, failures=["x"])
    assert gates_used(m) == (
        "`max_abs_err` → `fidelity.max_abs_err`: 0.5 (needs ≤ 0.01) **FAIL**; "
        "`min.iou_min` → `fidelity.iou_min`: 0.97 (needs ≥ 0.95) pass; "
        "`min.recall` → `custom.recall`: not measured (needs ≥ 0.9) **FAIL**"
    )
    assert gates_used(make_metrics("b", "none", 1.0, 1.0)) == "none set"


def test_gates_used_in_summary(project, make_metrics, tmp_path):
    project.model("det", task="detection").build("det_int8", "det", "static_int8")
    checked = {"min.iou_min": {"metric": "fidelity.iou_min", "threshold": 0.95, "value": 0.97, "passed": True}}
    m = make_metrics("det_int8", "static_int8", 0.5, 0.99, model="det", task="detection",
                     figures={"iou_min": 0.97, "iou_mean": 0.99}, checked=checked)
    m["custom"] = {"recall": 0.93}
    m["search"] = {"chosen": "static_per_channel", "reason": "fastest passing", "verdict": "faster",
                   "candidates": [{"name": "a"}, {"name": "b"}]}
    project.metrics(m)
    text = write_report(project.metrics_dir, tmp_path / "r", project.params, project.logs).read_text()
    assert "  - gates used: `min.iou_min` → `fidelity.iou_min`: 0.97 (needs ≥ 0.95) pass" in text
    assert "  - custom metrics: recall 0.93" in text
    assert "  - chosen by a search among 2 candidates: `static_per_channel`: fastest passing" in text


def test_task_figures_per_task():
    assert task_figures("classification") == ["top1_agreement_min"]
    assert task_figures("embedding") == ["embedding_cosine_min"]
    assert task_figures("detection") == task_figures("segmentation") == ["iou_min"]
    assert task_figures("regression") == task_figures("other") == ["abs_err_max", "rel_err_max"]
    assert FIGURE_COLUMNS == ("top1_agreement_min", "embedding_cosine_min", "iou_min", "abs_err_max", "rel_err_max")
    assert set(FIGURE_COLUMNS) <= set(COLUMNS) and "verdict" in COLUMNS


def test_each_model_table_shows_its_task_figures(project, make_metrics, tmp_path):
    specs = [("cls", "classification", {"top1_agreement_min": 0.625}), ("emb", "embedding", {"embedding_cosine_min": 0.9905}),
             ("seg", "segmentation", {"iou_min": 0.875}), ("reg", "regression", {"abs_err_max": 0.25, "rel_err_max": 0.0125})]
    for model, task, figures in specs:
        project.model(model, task=task).build(f"{model}_int8", model, "static_int8")
        project.metrics(make_metrics(f"{model}_int8", "static_int8", 0.5, 0.98, model=model, task=task, figures=figures))
    report = collect(project.metrics_dir, project.params, project.logs)
    text = write_report(project.metrics_dir, tmp_path / "r", project.params, project.logs).read_text()
    expected = {"cls": ("top1_agreement_min", "0.6250"), "emb": ("embedding_cosine_min", "0.990500"),
                "seg": ("iou_min", "0.8750"), "reg": ("abs_err_max | rel_err_max", "0.25 |  0.0125")}
    for model, task, _ in specs:
        section = text.split(f"## {model} ({task})", 1)[1].split("\n## ", 1)[0]
        header = next(line for line in section.splitlines() if line.startswith("| build"))
        body = next(line for line in section.splitlines() if line.startswith(f"| {model}_int8"))
        names, value = expected[model]
        assert names in " ".join(header.split()) and "cosine_min " not in header.replace("embedding_cosine_min", "")
        assert " ".join(value.split()) in " ".join(body.split())
    by_name = {r["build"]: r for r in report.table}
    assert by_name["reg_int8"]["rel_err_max"] == 0.0125 and by_name["emb_int8"]["iou_min"] is None
