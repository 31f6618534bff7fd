"""summary.md: how each build was measured (target, threads, runs/warm-up/batch) and a warning when
one model's builds were measured differently."""

from __future__ import annotations

import json

from pipeline.report import write_report
from pipeline.report.markdown import settings_note
from pipeline.report.summary import load_metrics, rows


def _measured(m, threads, runs, warmup):
    m = json.loads(json.dumps(m))
    m["environment"] = {**m["environment"], "threads": {"intra_op": threads, "inter_op": 0}}
    m["benchmark"] = {**m["benchmark"], "runs": runs, "warmup": warmup}
    return m


def test_rows_say_how_each_build_was_measured(tmp_path, make_metrics):
    d = tmp_path / "m"
    d.mkdir()
    (d / "cnn_fp32.json").write_text(json.dumps(_measured(make_metrics("cnn_fp32", "none", 1.0, 1.0), 0, 100, 10)))
    (d / "cnn_int8.json").write_text(json.dumps(_measured(make_metrics("cnn_int8", "static_int8", 0.5, 0.999), 2, 100, 10)))
    table = rows(load_metrics(d))
    assert [(r["threads"], r["runs"], r["warmup"], r["batch_size"]) for r in table] == [(0, 100, 10, 1), (2, 100, 10, 1)]
    text = write_report(d, tmp_path / "r").read_text()
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in text.splitlines() if line.startswith("| cnn_")}
    assert lines["cnn_fp32"][2:4] == ["cpu (default threads)", "100/10/1"]
    assert lines["cnn_int8"][2:4] == ["cpu (2 threads)", "100/10/1"]
    assert "runs/warm-up/batch" in text.split("| build", 1)[1].splitlines()[0]
    assert "**Not measured alike**" in text  # 0 vs 2 threads


def test_builds_measured_alike_get_no_note(make_metrics):
    same = rows({n: _measured(make_metrics(n, "none", p50, 1.0), 1, 100, 10) for n, p50 in (("a", 1.0), ("b", 0.5))})
    assert settings_note(same) is None


def test_a_quick_one_thread_build_beside_default_ones_is_flagged(make_metrics):
    table = rows({
        "cnn_fp32": _measured(make_metrics("cnn_fp32", "none", 1.0, 1.0), 2, 100, 10),
        "cnn_int8": _measured(make_metrics("cnn_int8", "static_int8", 0.54, 1.0), 2, 100, 10),
        "cnn_best": _measured(make_metrics("cnn_best", "static_int8", 0.39, 1.0), 1, 20, 2),  # a promoted quick point
    })
    note = settings_note(table)
    assert note.startswith("**Not measured alike**")
    assert "cpu (2 threads), runs/warm-up/batch 100/10/1: `cnn_fp32`, `cnn_int8`" in note
    assert "cpu (1 thread), runs/warm-up/batch 20/2/1: `cnn_best`" in note
