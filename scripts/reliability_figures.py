"""The reliability figures of issue 10, measured on a tiny project of its own (never the user's conf/).

    python scripts/reliability_figures.py [--inputs 400] [--kills 20] [--seed 0]

Prints: bad inputs tried (generated with hypothesis: overrides and recipe files), how many got one
line, how many a traceback, how many were silently accepted, how many changed params.yaml; then
SIGKILLs of `dvc repro` at random offsets: kills, recovered by a plain `dvc repro`, corrupt
artifacts (an ONNX file that does not load, a JSON file that does not parse, a temporary folder left),
lost results (dvc.lock hashes after recovery differ from a clean build's), `dvc status` dirty.
Exit code 1 when any figure that must be 0 is not.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fuzz(root: Path, n: int, seed: int) -> dict[str, int]:
    """Run ``n`` generated bad inputs (2/3 overrides, 1/3 recipe files) through compose."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.reliability.bad_inputs import bad_overrides, bad_recipes, run_compose, run_recipe

    figures: Counter[str] = Counter()
    examples: dict[str, str] = {}

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(bad_overrides().map(lambda c: ("override", c)), bad_recipes().map(lambda c: ("recipe", c))))
    def one(case):
        what, (kind, value) = case
        out = run_compose(root, value) if what == "override" else run_recipe(root, value)
        figures["inputs tried"] += 1
        figures[f"  {what}s"] += 1
        if out.traceback:
            figures["tracebacks"] += 1
            examples.setdefault(f"traceback ({kind})", f"{value!r}: {out.err.strip()[:300]}")
        elif out.code == 0:
            figures["silently accepted"] += 1
            examples.setdefault(f"accepted ({kind})", repr(value))
        elif out.one_line:
            figures["one-line errors"] += 1
        else:
            figures["not one line"] += 1
            examples.setdefault(f"not one line ({kind})", f"{value!r}: {out.err.strip()[:300]}")
        if out.params_changed:
            figures["params.yaml changed"] += 1

    import hypothesis

    hypothesis.seed(seed)(one)()
    for label, text in examples.items():
        print(f"    e.g. {label}: {text}")
    return dict(figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=400, help="generated bad inputs (default 400)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of dvc repro (default 20; 0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from tests.reliability.kill import kill_trials
    from tests.reliability.tiny import make_dvc_project, make_project

    must_be_zero = ["tracebacks", "silently accepted", "not one line", "params.yaml changed",
                    "corrupt", "lost", "dvc status dirty", "not recovered", "stage outlived dvc"]
    with tempfile.TemporaryDirectory(prefix="onnxbuild-reliability-") as tmp:
        root = make_project(Path(tmp) / "fuzz")
        (root / "dvc.yaml").write_text("stages: {}\n")
        os.chdir(root)
        from pipeline.compose import main as compose_main

        compose_main([])
        start = time.perf_counter()
        figures = fuzz(root, args.inputs, args.seed) if args.inputs else {}
        fuzz_s = time.perf_counter() - start
        os.chdir(ROOT)
        if args.kills:
            start = time.perf_counter()
            repo = make_dvc_project(Path(tmp) / "kill")
            seen: list[str] = []
            figures.update(kill_trials(repo, args.kills, random.Random(args.seed), seen))
            for line in seen:
                print(f"    {line}")
            kill_s = time.perf_counter() - start
    if args.inputs:
        print(f"fuzzing ({fuzz_s:.0f} s):")
        for key in ("inputs tried", "  overrides", "  recipes", "one-line errors", "tracebacks", "silently accepted",
                    "not one line", "params.yaml changed"):
            print(f"  {key:<22} {figures.get(key, 0)}")
    if args.kills:
        print(f"kills ({kill_s:.0f} s):")
        for key in ("kills", "recovered", "not recovered", "corrupt", "lost", "dvc status dirty", "stage outlived dvc"):
            print(f"  {key:<22} {figures.get(key, 0)}")
    bad = {k: figures[k] for k in must_be_zero if figures.get(k)}
    if bad:
        print(f"FAIL: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
