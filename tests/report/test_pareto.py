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


def _box_distance(box, point):
    cx, cy = min(max(point[0], box.x0), box.x1), min(max(point[1], box.y0), box.y1)
    return ((point[0] - cx) ** 2 + (point[1] - cy) ** 2) ** 0.5


def test_each_label_is_anchored_on_and_sits_beside_its_own_point(make_metrics):
    """Crowded like the digits CNN: two builds 0.07 ms apart at equal fidelity, one far to the right."""
    import numpy as np
    from matplotlib import pyplot as plt
    from matplotlib.text import Annotation

    from pipeline.report import pareto

    spec = {"cnn_static_int8": (0.062, 1.0, 0.9961), "cnn_fp32": (0.131, 1.0, 0.9961),
            "cnn_dynamic_int8": (0.595, 1.0, 0.9961), "cnn_qop": (0.10, 0.998, 0.9950),
            "cnn_fp16": (0.135, 0.999, 0.9955)}
    table = rows({name: make_metrics(name, "static_int8", p50, 0.999, top1=top1, source_top1=0.9961,
                                     figures={"top1_agreement_min": agree})
                  for name, (p50, agree, top1) in spec.items()})
    fig = pareto.figure(table)
    try:
        renderer = fig.canvas.get_renderer()
        checked = 0
        for ax in fig.axes:
            points = {b: (x, y) for b, x, y in getattr(ax, "_pareto_points", [])}
            if not points:
                continue
            key = 1 if "top1_agreement_min" in ax.get_title() else 2
            # the points are the builds' own numbers, and each is drawn there
            assert points == {b: (v[0], v[key]) for b, v in spec.items()}
            drawn = sorted(tuple(c.get_offsets()[0]) for c in ax.collections)
            assert np.allclose(drawn, sorted(points.values()))
            labels = [t for t in ax.texts if isinstance(t, Annotation)]
            assert sorted(n for a in labels for n in a.get_text().split("\n")) == sorted(points)
            for a in labels:
                names = a.get_text().split("\n")
                assert a.xy == points[names[0]]  # anchored on its own point (data coordinates)
                box = a.get_window_extent(renderer)
                own = ax.transData.transform(a.xy)
                for other, xy in points.items():
                    if other not in names:  # nearer to its own point than to any other
                        assert _box_distance(box, own) < _box_distance(box, ax.transData.transform(xy)), (names, other)
                checked += 1
        assert checked == 10  # five builds, two panels
    finally:
        plt.close(fig)
