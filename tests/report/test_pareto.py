import pytest

from pipeline.report.pareto import pareto_front, plot
from pipeline.report.summary import load_metrics, rows


def test_front_on_known_points():
    # (latency, quality): b dominates d; a is fastest; c is best
    points = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.99), (2.5, 0.94)]
    assert pareto_front(points) == [True, True, True, False]


def test_ties_and_duplicates():
    assert pareto_front([(1.0, 0.9), (1.0, 0.9)]) == [True, True]  # neither strictly better
    assert pareto_front([(1.0, 0.9), (1.0, 0.8)]) == [True, False]
    assert pareto_front([(1.0, 0.9)]) == [True]
    assert pareto_front([]) == []


def test_plot_writes_png(metrics_dir, tmp_path):
    table = rows(load_metrics(metrics_dir))
    path = plot(table, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_accuracy(make_metrics, tmp_path):
    table = rows({"a": make_metrics("a", "none", 1.0, 0.99), "b": make_metrics("b", "none", 0.5, 0.98)})
    assert all(r["top1"] is None for r in table)
    assert plot(table, tmp_path / "p.png").stat().st_size > 0


def test_nines_axis():
    from pipeline.report.pareto import MAX_NINES, _nines_ticks, nines

    assert nines(0.9) == pytest.approx(1.0)
    assert nines(0.999) == pytest.approx(3.0)
    assert nines(0.0) == 0.0
    assert nines(1.0) == MAX_NINES and nines(1 - 1e-12) == MAX_NINES
    assert nines(-1.0) < 0
    values = [0.9, 0.99, 0.9995]
    assert sorted(values, key=nines) == values  # monotonic
    ticks, labels = _nines_ticks([nines(v) for v in values])
    assert labels == ["0.9", "0.99", "0.999", "0.9999"]
    assert ticks == sorted(ticks)


def test_coinciding_builds_share_a_label():
    from pipeline.report.pareto import _clusters

    groups = _clusters([0.100, 0.1005, 1.0, 10.0], [0.99, 0.99, 0.99, 0.5], log_x=True)
    assert groups == [[0, 1], [2], [3]]


def test_fidelity_axis_is_the_task_figure_per_model(make_metrics):
    from pipeline.report.pareto import fidelity_key, lower_is_better

    det = rows({"d": make_metrics("d", "none", 1.0, 0.99, model="det", task="detection", figures={"iou_min": 0.9})})
    reg = rows({"r": make_metrics("r", "none", 1.0, 0.99, model="reg", task="regression",
                                  figures={"abs_err_max": 0.1, "rel_err_max": 0.01})})
    old = rows({"o": make_metrics("o", "none", 1.0, 0.99, task="embedding")})  # predates task figures
    assert fidelity_key(det) == "iou_min"
    assert fidelity_key(reg) == "abs_err_max" and lower_is_better("abs_err_max")
    assert fidelity_key(old) == "cosine_min" and not lower_is_better("iou_min")


def test_plot_per_model_with_failed_and_gate_failing_builds(make_metrics, tmp_path, monkeypatch):
    from matplotlib import pyplot as plt

    from pipeline.report import pareto
    from pipeline.report.collect import failed_row
    from pipeline.report.project import PlannedBuild

    table = rows({
        "det_fp32": make_metrics("det_fp32", "none", 1.0, 1.0, model="det", task="detection", figures={"iou_min": 1.0}),
        "det_int8": make_metrics("det_int8", "static_int8", 0.5, 0.9, model="det", task="detection",
                                 figures={"iou_min": 0.8}, failures=["fidelity.iou_min 0.8 < min.iou_min 0.95"]),
        "reg_a": make_metrics("reg_a", "none", 1.0, 1.0, model="reg", task="regression", figures={"abs_err_max": 0.001}),
        "reg_b": make_metrics("reg_b", "static_int8", 0.5, 0.99, model="reg", task="regression", figures={"abs_err_max": 0.1}),
        "reg_c": make_metrics("reg_c", "static_int8", 0.7, 0.99, model="reg", task="regression", figures={"abs_err_max": 0.2}),
    })
    table.append(failed_row(PlannedBuild("det_broken", "det", "detection", "static_int8", (), "cpu", None), None))
    drawn = {}
    real_panel = pareto._panel

    def spy(ax, rows_, key, label, title):
        real_panel(ax, rows_, key, label, title)
        drawn[title] = (key, [t.get_text() for t in ax.texts], ax.collections)

    monkeypatch.setattr(pareto, "_panel", spy)
    path = pareto.plot(table, tmp_path / "p.png")
    plt.close("all")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn["det: latency vs iou_min"][0] == "iou_min" and drawn["reg: latency vs abs_err_max"][0] == "abs_err_max"
    assert "failed, not plotted: det_broken" in drawn["det: latency vs iou_min"][1]
    # lower error is better: reg_c (slower and worse than reg_b) is off the front, reg_a and reg_b are on it
    reg_colors = [tuple(c.get_facecolor()[0][:3]) for c in drawn["reg: latency vs abs_err_max"][2]]
    from matplotlib.colors import to_rgb

    assert reg_colors == [to_rgb("tab:red"), to_rgb("tab:red"), to_rgb("tab:blue")]
    det_markers = [c.get_paths()[0].vertices.shape[0] for c in drawn["det: latency vs iou_min"][2]]
    assert det_markers[0] != det_markers[1]  # the gate-failing build is drawn with another marker
