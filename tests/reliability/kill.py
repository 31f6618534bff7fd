"""SIGKILL a `dvc repro` of the tiny project at random offsets, recover with a plain `dvc repro`, and
judge what is left: corrupt artifacts, leftover temporaries, lost results, a dirty `dvc status`, a
stage process that outlived its killed `dvc`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.reliability.tiny import env_for, run

DVC = (sys.executable, "-m", "dvc")


def lock_hashes(root: Path) -> dict[str, str]:
    """``{path: md5}`` of every deterministic output in dvc.lock (artifacts and training metrics;
    evaluate's latency figures differ on every run by nature)."""
    import yaml

    path = root / "dvc.lock"
    lock = yaml.safe_load(path.read_text()) if path.exists() else None
    out: dict[str, str] = {}
    if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
        return out  # missing or emptied: every result it recorded is lost
    for stage in lock["stages"].values():
        for entry in stage.get("outs", []):
            if entry["path"].startswith(("artifacts/", "metrics/models/")):
                out[entry["path"]] = entry["md5"]
    return out


def corrupt_files(root: Path) -> list[str]:
    """ONNX files that do not load, JSON that does not parse, temporaries left in the outputs."""
    import onnx

    bad = []
    for folder in ("artifacts", "metrics", "reports"):
        base = root / folder
        if not base.exists():
            continue
        for path in base.rglob("*"):
            if ".tmp-" in path.name or ".old-" in path.name:
                bad.append(f"{path.relative_to(root)} (left over)")
            elif path.suffix == ".onnx" and path.is_file():
                try:
                    onnx.checker.check_model(onnx.load(str(path)))
                except Exception as exc:  # noqa: BLE001
                    bad.append(f"{path.relative_to(root)} ({type(exc).__name__})")
            elif path.suffix == ".json" and path.is_file():
                try:
                    json.loads(path.read_text())
                except ValueError:
                    bad.append(f"{path.relative_to(root)} (bad JSON)")
    return bad


def stage_processes(root: Path) -> list[int]:
    """Pids of stage processes running in ``root`` (their cwd), found in /proc."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "cwd") != str(root):
                continue
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pipeline.stages." in b" ".join(cmd):
            pids.append(int(proc.name))
    return pids


def _wait_no_stages(root: Path, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        left = stage_processes(root)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill_trials(root: Path, n: int, rng: random.Random, seen: list[str] | None = None) -> dict[str, int]:
    """``n`` trials: a forced `dvc repro` (the pipeline, or one random stage) killed with SIGKILL after
    a random delay (dvc alone, or its whole process group), then a plain `dvc repro`; returns the
    figures. ``seen``: receives a line per corrupt file found."""
    env = env_for(root)
    start = time.monotonic()
    run(root, *DVC, "repro")
    full = time.monotonic() - start
    reference = lock_hashes(root)
    stages = [line.split()[0] for line in run(root, *DVC, "stage", "list").stdout.splitlines() if line.strip()]
    figures: Counter[str] = Counter()
    for trial in range(n):
        # every 4th trial: the whole forced pipeline; else one forced stage (shorter, so 20 kills
        # fit in minutes; each stage's whole run, its lock update included, is a target)
        if trial % 4 == 0:
            cmd, window = [*DVC, "repro", "-f"], full
        else:
            cmd, window = [*DVC, "repro", "-f", "-s", rng.choice(stages)], min(full, 5.0)
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.2, window))
        whole_group = trial % 2 == 1
        try:
            if whole_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)  # dvc alone: its stage must notice
        except ProcessLookupError:
            pass
        proc.wait()
        figures["kills"] += 1
        # a stage that follows its parent ends within milliseconds; one that does not keeps working
        # (the probe: it rewrote a metrics file after the recovery run)
        orphans = _wait_no_stages(root, 1.5)
        if orphans:
            figures["stage outlived dvc"] += 1
            for pid in orphans:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        rec = run(root, *DVC, "repro", check=False)
        status = run(root, *DVC, "status", check=False)
        clean = status.returncode == 0 and "up to date" in (status.stdout + status.stderr)
        if rec.returncode == 0 and clean:
            figures["recovered"] += 1
        else:
            figures["not recovered"] += 1
            if seen is not None:
                tail = " | ".join((rec.stderr + rec.stdout + status.stdout).strip().splitlines()[-4:])
                seen.append(f"trial {trial} ({' '.join(cmd[3:])}, {'group' if whole_group else 'dvc alone'}): "
                            f"not recovered (repro exit {rec.returncode}): {tail[:400]}")
        if not clean:
            figures["dvc status dirty"] += 1
        bad = corrupt_files(root)
        figures["corrupt"] += len(bad)
        if seen is not None:
            seen.extend(f"trial {trial} ({' '.join(cmd[3:])}, {'group' if whole_group else 'dvc alone'}): {b}" for b in bad)
        if lock_hashes(root) != reference:
            figures["lost"] += 1
    return dict(figures)
