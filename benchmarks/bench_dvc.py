"""DVC-side speed, side by side in one run (a benchmark, not a test; numbers vary with host load):

1. a no-op ``dvc repro`` of a project of ``--builds`` builds (15: the size of the default project)
   against a no-op ``dvc repro`` of a trivial DVC project with the same number of stages (aim: at most 1.3x);
2. the time to compose 50 builds with ``onnxbuild compose`` (aim: under 3 s);
3. after a target-only change, the stages DVC would rerun (aim: only quantize@* and evaluate@*).

The project is the framework tests' fixture project (tests/fixtures/project: two models, builds of
its recipes added to reach ``--builds``), so the benchmark measures the framework whatever the user's
conf/ holds. It is never built here: every stage's outputs are stand-ins recorded with
``dvc commit -f`` in a temporary copy, so the no-op is measured on the real stage graph
(templated foreach stages, params lists, code deps) without minutes of building.

    python benchmarks/bench_dvc.py [--repeat 5] [--builds 15]
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
FRAMEWORK_FILES = ("pipeline", "dvc.yaml", ".dvcignore", "requirements")
RECIPES = ("cnn_fp32", "cnn_dynamic_int8", "cnn_static_int8", "mlp_fp32")  # the fixture's, cycled for more builds
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def sh(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=cwd, env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return sh(cwd, sys.executable, "-m", "dvc", *args)


def timed(cwd: Path, repeat: int, *args: str) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        dvc(cwd, *args)
        times.append(time.perf_counter() - start)
    return times


def with_builds(conf: Path, builds: int) -> None:
    """Declare more builds of the fixture's recipes in ``conf/config.yaml`` until there are ``builds``."""
    cfg = conf / "config.yaml"
    text = cfg.read_text()
    have = text.count("- recipe@builds.")
    extra = "".join(f"  - recipe@builds.bench_{i}: {RECIPES[i % len(RECIPES)]}\n" for i in range(max(builds - have, 0)))
    cfg.write_text(text.replace("  - _self_", extra + "  - _self_", 1))


def default_project(dest: Path, builds: int) -> int:
    """The fixture project with ``builds`` builds and stand-in outputs committed; returns its number of stages."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(FIXTURE_PROJECT, dest, ignore=ignore)
    for name in FRAMEWORK_FILES:
        src = ROOT / name
        (shutil.copytree(src, dest / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, dest / name))
    with_builds(dest / "conf", builds)
    sh(dest, "git", "init", "-q")
    dvc(dest, "init", "-q")
    shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    sh(dest, sys.executable, "-m", "pipeline.cli", "compose")
    from dvc.repo import Repo

    repo = Repo(str(dest))
    try:
        stages = list(repo.index.stages)
        for stage in stages:
            for out in stage.outs:
                path = dest / out.def_path
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "stand-in.txt").write_text(out.def_path)
    finally:
        repo.close()
    dvc(dest, "commit", "-f", "-q")
    return len(stages)


def trivial_project(dest: Path, n: int) -> None:
    """``n`` chained one-line stages, each with a file dep and a cached out, already run."""
    dest.mkdir(parents=True)
    sh(dest, "git", "init", "-q")
    dvc(dest, "init", "-q")
    (dest / "in.txt").write_text("0\n")
    lines = ["stages:"]
    prev = "in.txt"
    for i in range(n):
        lines += [f"  s{i}:", f"    cmd: cp {prev} o{i}.txt", "    deps:", f"      - {prev}", "    outs:", f"      - o{i}.txt"]
        prev = f"o{i}.txt"
    (dest / "dvc.yaml").write_text("\n".join(lines) + "\n")
    dvc(dest, "repro", "-q")


def compose_time(project: Path, repeat: int) -> list[float]:
    from pipeline.compose import compose
    from pipeline.project import use_project

    use_project(project)
    declared = len(compose([], project / "conf").data["builds"])
    overrides = [f"+recipe@builds.more_{i}=cnn_static_int8" for i in range(50 - declared)]
    out = Path(tempfile.mkdtemp()) / "params.yaml"
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        sh(project, sys.executable, "-m", "pipeline.cli", "compose", "--out", str(out), *overrides)
        times.append(time.perf_counter() - start)
    n = len(__import__("yaml").safe_load(out.read_text())["builds"])
    assert n == 50, n
    return times


def target_only_change(dest: Path) -> list[str]:
    sh(dest, sys.executable, "-m", "pipeline.cli", "compose", "target.threads=1")
    status = json.loads(dvc(dest, "status", "--json").stdout)
    sh(dest, sys.executable, "-m", "pipeline.cli", "compose")
    return sorted(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--builds", type=int, default=15, help="builds in the measured project (default 15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dvc-") as tmp:
        tmp = Path(tmp)
        n = default_project(tmp / "default", args.builds)
        trivial_project(tmp / "trivial", n)
        ours = timed(tmp / "default", args.repeat, "repro")
        trivial = timed(tmp / "trivial", args.repeat, "repro")
        compose = compose_time(tmp / "default", args.repeat)
        rerun = target_only_change(tmp / "default")
    med = statistics.median
    print(f"no-op `dvc repro`, {n} stages, {args.builds} builds (median of {args.repeat}):")
    print(f"  fixture project   {med(ours):6.2f} s")
    print(f"  trivial project   {med(trivial):6.2f} s")
    print(f"  ratio             {med(ours) / med(trivial):6.2f}x   (aim: <= 1.3x)")
    print(f"compose 50 builds   {med(compose):6.2f} s   (median of {args.repeat}, whole command; aim: < 3 s)")
    ok = bool(rerun) and all(s.startswith(("quantize@", "evaluate@")) or s == "report" for s in rerun)
    print(f"after `target.threads=1`, DVC reruns: {', '.join(rerun)}")
    print(f"  {'only quantize@* + evaluate@*' if ok else 'NOT only quantize@* + evaluate@*'} "
          "(quantize reads the target: `quantization: auto` measures on it; `report` follows the new metrics)")


if __name__ == "__main__":
    main()
