import csv
import json

import pytest

from pipeline.errors import StageError
from pipeline.report import write_report
from pipeline.report.summary import COLUMNS, load_metrics, row
from pipeline.report.verdicts import SLOWER_BELOW


def test_report_lists_every_build(metrics_dir, tmp_path):
    out = tmp_path / "reports"
    summary = write_report(metrics_dir, out)
    assert summary == out / "summary.md"
    text = summary.read_text()
    names = sorted(p.stem for p in metrics_dir.glob("*.json"))
    table = [line for line in text.splitlines() if line.startswith("| cnn_")]
    assert sorted(line.split("|")[1].strip() for line in table) == names
    assert "| build " in text and "p50 ms" in text and "cosine_min" in text
    assert "![Pareto plot](pareto.png)" in text
    assert "**FAIL**: speedup 0.625 < min_speedup 1.0" in text
    assert "Test CPU" in text and "avx512" in text
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with open(out / "builds.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["build"] for r in rows] == names
    assert list(rows[0]) == list(COLUMNS)
    by_name = {r["build"]: r for r in rows}
    assert float(by_name["cnn_static_int8"]["p50_ms"]) == 0.45
    assert float(by_name["cnn_static_int8"]["accuracy_drop"]) == pytest.approx(0.003)
    assert by_name["cnn_static_int8_s8s8"]["gates_passed"] == "False"


def test_builds_slower_than_fp32_are_called_out(metrics_dir, tmp_path):
    text = write_report(metrics_dir, tmp_path / "reports").read_text()
    section = text.split("## Slower than the fp32 export", 1)[1].split("##", 1)[0]
    slower = sorted(line.split("`")[1] for line in section.splitlines() if line.startswith("- `"))
    expected = sorted(
        p.stem for p in metrics_dir.glob("*.json") if json.loads(p.read_text())["speedup"] < SLOWER_BELOW
    )
    assert expected and slower == expected


def test_rewriting_replaces_the_report(metrics_dir, tmp_path):
    out = tmp_path / "reports"
    write_report(metrics_dir, out)
    (metrics_dir / "cnn_fp32.json").unlink()
    write_report(metrics_dir, out)
    assert "cnn_fp32 " not in (out / "summary.md").read_text()


def test_missing_values_are_dashes_and_empty_cells(make_metrics, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    m = make_metrics("regressor", "none", 2.0, 0.99)  # no accuracy
    del m["fidelity"]["top1_agreement"]
    (d / "regressor.json").write_text(json.dumps(m))
    (d / "scored.json").write_text(json.dumps(make_metrics("scored", "none", 1.0, 0.999, top1=0.97)))
    out = write_report(d, tmp_path / "r")
    line = next(line for line in out.read_text().splitlines() if line.startswith("| regressor"))
    assert line.count("–") == 2  # top-1 and accuracy drop (a model with accuracy shows both columns)
    r = row("regressor", m)
    assert r["top1"] is None and r["top1_agreement"] is None
    assert (tmp_path / "r" / "builds.csv").read_text().splitlines()[1].count(",,") >= 2


def test_no_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match="no metrics files .* run the evaluate stages first"):
        write_report(tmp_path / "nowhere", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_corrupt_metrics_file_is_named_and_earlier_report_kept(metrics_dir, tmp_path):
    out = tmp_path / "r"
    write_report(metrics_dir, out)
    before = (out / "summary.md").read_text()
    (metrics_dir / "broken.json").write_text("{not json")
    with pytest.raises(StageError, match="broken.json is not valid JSON"):
        load_metrics(metrics_dir)
    with pytest.raises(StageError):
        write_report(metrics_dir, out)
    assert (out / "summary.md").read_text() == before
    (metrics_dir / "broken.json").write_text(json.dumps({"some": "thing"}))
    with pytest.raises(StageError, match="not a build metrics file"):
        load_metrics(metrics_dir)
