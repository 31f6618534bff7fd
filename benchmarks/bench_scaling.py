"""Sweep scaling, side by side in one run (a benchmark, not a test; numbers vary with host load):
the same N-point sweep on Hydra's basic launcher, joblib and a local Ray instance, with 1 and 2
workers: wall time, the build work inside the points, and each launcher's per-point overhead beyond
that work, printed as ratios to the basic launcher.

    python benchmarks/bench_scaling.py [--rounds 3] [--points 4]

The project is the framework tests' fixture project (tests/fixtures/project) and its untrained MLP,
so the build work per point is small and the launchers' own costs show. Its export is built once
before timing (every point reuses it from the sweep cache). Configurations run interleaved, in a
rotated order per round; the spread is min-max over rounds.

Definitions: ``wall`` is the sweep command's wall time (interpreter start, Hydra, launcher start,
points, leaderboard); ``work`` is the sum of the points' own time (run_point: passes, quantization,
evaluation); ``overhead/point = (wall - work / parallelism) / points`` with parallelism =
min(workers, points). Latency measurements are serialised by the host-wide benchmark lock, so
parallel workers overlap only the other work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_PROJECT = ROOT / "tests" / "fixtures" / "project"
BASE = ["model=tiny_mlp", "evaluate.runs=20", "evaluate.warmup=2"]
CONFIGS = {
    "basic (1)": (1, []),
    "joblib (1)": (1, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"]),
    "joblib (2)": (2, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]),
    "ray local (1)": (1, ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=1"]),
    "ray local (2)": (2, ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2"]),
}


def point_overrides(n: int) -> list[str]:
    """``n`` distinct points: quantization x threads (x passes beyond 4)."""
    grid = [(q, t, p) for p in ("default", "none", "shape_only") for q in ("none", "dynamic_int8") for t in (1, 2)]
    if n > len(grid):
        raise SystemExit(f"--points at most {len(grid)}")
    return [f"quantization={q} target.threads={t} passes={p}" for q, t, p in grid[:n]]


def run(project: Path, env: dict[str, str], extra: list[str], points: list[str]) -> dict[str, float]:
    # one multirun: Hydra sweeps the product of per-key lists, and the grid's first 2, 4, 8 or 12
    # points are exactly such a product
    keys: dict[str, list[str]] = {}
    for point in points:
        for kv in point.split():
            k, v = kv.split("=")
            keys.setdefault(k, [])
            if v not in keys[k]:
                keys[k].append(v)
    sweep = [f"{k}={','.join(v)}" for k, v in keys.items()]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.sweep", "-m", *BASE, *sweep, *extra], cwd=project, env=env,
                          capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"sweep {' '.join(extra) or 'basic'} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("leaderboard: "))
    folder = Path(line.split()[1]).parent
    pts = [json.loads(p.read_text()) for p in folder.glob("*/point.json")]
    if len(pts) != len(points) or any(p["status"] != "ok" for p in pts):
        raise SystemExit(f"sweep {folder}: {len(pts)} points, statuses {[p['status'] for p in pts]}")
    return {"wall": wall, "work": sum(p["seconds"] for p in pts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--points", type=int, default=4, choices=(2, 4, 8, 12))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_scaling-"))
    project = tmp / "project"
    shutil.copytree(FIXTURE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "conf" / "sweep.yaml", project / "conf" / "sweep.yaml")
    env = {**os.environ, "ONNXBUILD_BENCH_LOCK": str(tmp / "bench.lock"), "RAY_AUTH_MODE": "token",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    points = point_overrides(args.points)
    try:
        run(project, env, [], points[:1])  # builds the export into the sweep cache (not timed)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
        names = list(CONFIGS)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                results[name].append(run(project, env, CONFIGS[name][1], points))
                print(f"round {r + 1}: {name:14s} wall {results[name][-1]['wall']:6.1f} s", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    n = len(points)
    base = statistics.median(x["wall"] for x in results["basic (1)"])
    print(f"\n{n}-point sweep of the fixture MLP, {args.rounds} interleaved rounds (median, [min-max]); "
          f"host {os.uname().nodename}, {os.cpu_count()} cores\n")
    print(f"| launcher (workers) | wall s | vs basic | work s | overhead/point s |")
    print(f"|---|---|---|---|---|")
    for name, (workers, _) in CONFIGS.items():
        walls = [x["wall"] for x in results[name]]
        works = [x["work"] for x in results[name]]
        over = [(x["wall"] - x["work"] / min(workers, n)) / n for x in results[name]]
        print(f"| {name} | {statistics.median(walls):.1f} [{min(walls):.1f}-{max(walls):.1f}] "
              f"| {statistics.median(walls) / base:.2f}x | {statistics.median(works):.1f} "
              f"| {statistics.median(over):.2f} [{min(over):.2f}-{max(over):.2f}] |")


if __name__ == "__main__":
    main()
