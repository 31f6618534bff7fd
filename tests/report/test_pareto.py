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
