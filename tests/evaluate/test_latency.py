import multiprocessing

import numpy as np
import pytest

from pipeline.evaluate import latency
from pipeline.evaluate.latency import benchmark_lock, block_sizes, measure_interleaved, stats_ms, time_runs
from pipeline.targets.cpu import CpuParams, CpuTarget


class CountingSession:
    """Counts runs and records the order sessions ran in."""

    def __init__(self, name, log):
        self.name, self.log, self.calls = name, log, 0

    def run(self, outputs, feeds):
        self.calls += 1
        self.log.append(self.name)


def test_stats_match_numpy():
    times_ns = [5_000_000, 1_000_000, 3_000_000, 2_000_000, 4_000_000, 10_000_000, 2_500_000]
    s = stats_ms(times_ns, batch_size=4)
    ms = np.array(times_ns) / 1e6
    assert s["mean"] == pytest.approx(ms.mean())
    assert s["std"] == pytest.approx(ms.std())
    assert s["min"] == ms.min() and s["max"] == ms.max()  # no trimming: the outlier stays
    for q in (50, 90, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(ms, q))
    assert s["throughput_per_s"] == pytest.approx(4 * 1000 / ms.mean())


def test_stats_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        stats_ms([])


@pytest.mark.parametrize(("runs", "blocks"), [(100, 10), (101, 10), (7, 10), (10, 3)])
def test_block_sizes_add_up(runs, blocks):
    sizes = block_sizes(runs, blocks)
    assert sum(sizes) == runs and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_interleaved_counts_and_alternating_order(monkeypatch):
    monkeypatch.setattr(latency, "SETTLE_S", 0.0)  # one untimed settling run per block
    log = []
    a, b = CountingSession("a", log), CountingSession("b", log)
    times = measure_interleaved({"a": (a, {}), "b": (b, {})}, warmup=3, runs=20, blocks=4)
    assert len(times["a"]) == len(times["b"]) == 20
    assert a.calls == b.calls == 3 + 4 + 20  # warm-up, one settling run per block, timed runs
    timed = log[6:]  # after 3 + 3 warm-up runs
    blocks = [timed[i : i + 6] for i in range(0, 48, 6)]
    assert [blk[0] for blk in blocks] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # ABBA order
    assert all(len(set(blk)) == 1 for blk in blocks)  # a block settles and times one session


def test_settle_runs_for_the_settling_time():
    import time

    session = CountingSession("a", [])
    t0 = time.perf_counter()
    n = latency.settle(session, {}, seconds=0.02)
    assert time.perf_counter() - t0 >= 0.02
    assert n == session.calls and n > 1


def test_real_model_latency(kit, tmp_path):
    path = kit.linear_model(tmp_path / "m.onnx")
    sess = CpuTarget().session(path, CpuParams(threads=1))
    feeds = {"x": np.ones((2, kit.N_IN), dtype=np.float32)}
    times = time_runs(sess, feeds, 30)
    assert len(times) == 30 and all(t > 0 for t in times)
    s = stats_ms(times, batch_size=2)
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert s["min"] <= s["mean"] <= s["max"] and s["std"] >= 0


def _hold_lock(path, ready, release):
    import os

    os.environ["ONNXBUILD_BENCH_LOCK"] = path
    with benchmark_lock():
        ready.set()
        release.wait(10)


def test_benchmark_lock_excludes_other_processes(bench_lock):
    from filelock import FileLock, Timeout

    assert latency.lock_path() == bench_lock
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(bench_lock), ready, release))
    proc.start()
    try:
        assert ready.wait(30)
        with pytest.raises(Timeout):
            FileLock(str(bench_lock)).acquire(timeout=0.2)
        with pytest.raises(Timeout):
            with benchmark_lock(timeout=0.2):
                pass
    finally:
        release.set()
        proc.join(30)
    with benchmark_lock(timeout=5) as held:  # released: available again
        assert held == bench_lock


def test_benchmark_lock_is_reentrant_in_one_thread(bench_lock):
    from filelock import FileLock, Timeout

    with benchmark_lock(timeout=1):
        with benchmark_lock(timeout=1):  # e.g. a sweep holding it around evaluate_build
            pass
        with pytest.raises(Timeout):  # still held against others
            FileLock(str(bench_lock)).acquire(timeout=0.1)
    lock = FileLock(str(bench_lock))
    lock.acquire(timeout=1)
    lock.release()


def test_benchmark_lock_excludes_other_threads(bench_lock):
    import threading

    from filelock import Timeout

    held, done = threading.Event(), threading.Event()
    result = {}

    def other():
        held.wait(10)
        try:
            with benchmark_lock(timeout=0.2):
                result["got"] = True
        except Timeout:
            result["got"] = False
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with benchmark_lock(timeout=1):
        held.set()
        done.wait(10)
    t.join(10)
    assert result == {"got": False}
