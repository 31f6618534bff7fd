"""Latency measurement: warm-up, timed ``session.run`` calls, honest statistics, a host-wide lock.

Each run is timed on its own with ``time.perf_counter_ns``; nothing is trimmed. A build and its
reference are measured in alternating blocks (ABBA order) so that machine noise hits both alike.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

LOCK_ENV = "ONNXBUILD_BENCH_LOCK"
DEFAULT_LOCK = Path(tempfile.gettempdir()) / "onnxbuild-benchmark.lock"
PERCENTILES = (50, 90, 99)
_LOCKS: dict[str, Any] = {}


def lock_path() -> Path:
    return Path(os.environ.get(LOCK_ENV) or DEFAULT_LOCK)


@contextlib.contextmanager
def benchmark_lock(timeout: float = -1, log: Any = None) -> Iterator[Path]:
    """Hold the host-wide benchmark lock (a file lock; path from $ONNXBUILD_BENCH_LOCK or the temp dir).

    Two measurements on one host never overlap, whatever process or launcher started them.
    """
    from filelock import FileLock, Timeout

    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # one FileLock per path and process: re-entrant in one thread (a sweep may hold the lock around
    # evaluate_build, which takes it again), exclusive between threads and processes
    lock = _LOCKS.setdefault(str(path), FileLock(str(path)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if log is not None:
            log.info("waiting for the benchmark lock %s (another measurement is running)", path)
        lock.acquire(timeout=timeout)
    try:
        yield path
    finally:
        lock.release()


def time_runs(session: Any, feeds: dict[str, Any], n: int) -> list[int]:
    """Run ``session`` ``n`` times on ``feeds``; the wall time of each run in nanoseconds."""
    run = session.run
    clock = time.perf_counter_ns
    out: list[int] = []
    for _ in range(n):
        t0 = clock()
        run(None, feeds)
        out.append(clock() - t0)
    return out


def stats_ms(times_ns: Sequence[int], batch_size: int = 1) -> dict[str, float]:
    """mean, std (population), min, p50, p90, p99, max in milliseconds, and throughput (samples/s).

    Percentiles use linear interpolation between order statistics (numpy's default).
    """
    if not times_ns:
        raise ValueError("no timed runs")
    ms = sorted(t / 1e6 for t in times_ns)
    n = len(ms)
    mean = sum(ms) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in ms) / n)
    out = {"mean": mean, "std": std, "min": ms[0], "max": ms[-1]}
    for q in PERCENTILES:
        out[f"p{q}"] = _percentile(ms, q)
    out["throughput_per_s"] = batch_size * 1000.0 / mean if mean > 0 else float("inf")
    return out


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def block_sizes(runs: int, blocks: int) -> list[int]:
    """Split ``runs`` into ``blocks`` near-equal block sizes that add up to ``runs``."""
    blocks = max(1, min(blocks, runs))
    base, extra = divmod(runs, blocks)
    return [base + (1 if i < extra else 0) for i in range(blocks)]


def measure(session: Any, feeds: dict[str, Any], warmup: int, runs: int) -> list[int]:
    """Warm up, then time ``runs`` runs of one session."""
    time_runs(session, feeds, warmup)
    return time_runs(session, feeds, runs)


# Untimed runs at the start of every block, for at least this long: ONNX Runtime's intra-op
# threads keep spinning for a while after a run, so right after a switch the other session's
# workers still occupy cores (measured: a 0.05 ms int8 CNN read 0.066 ms in blocks of 10 runs
# without settling, 0.052 ms with it, the same as a session timed alone).
SETTLE_S = 0.005


def settle(session: Any, feeds: dict[str, Any], seconds: float | None = None) -> int:
    """Run ``session`` untimed until ``seconds`` (default :data:`SETTLE_S`) have passed, at least
    once; returns the number of runs."""
    run = session.run
    end = time.perf_counter() + (SETTLE_S if seconds is None else seconds)
    n = 0
    while True:
        run(None, feeds)
        n += 1
        if time.perf_counter() >= end:
            return n


def measure_interleaved(
    sessions: dict[str, tuple[Any, dict[str, Any]]], warmup: int, runs: int, blocks: int = 10
) -> dict[str, list[int]]:
    """Time several sessions (name -> (session, feeds)) in alternating blocks.

    Every session gets ``warmup`` warm-up runs, then ``runs`` timed runs split into ``blocks``
    blocks; the order of sessions reverses every block (A B, B A, A B, ...). Each block starts
    with untimed runs for :data:`SETTLE_S` so the previous session's spinning threads are gone.
    """
    names = list(sessions)
    for name in names:
        session, feeds = sessions[name]
        time_runs(session, feeds, warmup)
    times: dict[str, list[int]] = {name: [] for name in names}
    for i, size in enumerate(block_sizes(runs, blocks)):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            session, feeds = sessions[name]
            settle(session, feeds)
            times[name].extend(time_runs(session, feeds, size))
    return times
