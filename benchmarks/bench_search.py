"""Search benchmark: does ``quantization: auto`` find a build at least as good as the best hand-written recipe?

    .venv/bin/python benchmarks/bench_search.py [--models minilm ppocr_det ppocr_rec ppocr_cls] [--runs 200]

For each real third-party model (conf/model/<name>.yaml; all ship inside installed packages, no
download) it prepares and exports the model into a scratch folder, runs the default passes, builds
the hand-written recipes (the quantizer options a user would pick: static int8 per-channel /
per-tensor, dynamic int8) and the searched build (``quantization: auto``, the recipe's gates), and
then measures ALL of them against the fp32 export in ONE interleaved run on the 2-thread CPU target
(batch 1), with fidelity on the reference samples. Per model it prints each build's speedup, noise
interval, the gated fidelity figure and whether the gates pass; then the best hand-written recipe
(fastest passing its gates) beside the searched build, and the search's choice and reason.
The searched build follows the model's ``conf/recipe/<model>_auto.yaml`` where there is one (its
passes, its ``quantization.space`` and its target's ``session_config``); every build, the hand ones
included, is measured on that target against the export on the same target.

The machine is shared: compare numbers within one run only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

# the targets (issue 8) as gates of each model's builds; the gated figure is printed
GATES: dict[str, dict[str, Any]] = {
    "minilm": {"min": {"embedding_cosine_min": 0.99}},
    "ppocr_det": {"min": {"iou_min": 0.95}},
    "ppocr_rec": {"min": {"top1_agreement_min": 0.98}},
    "ppocr_cls": {"min_cosine": 0.97, "max_accuracy_drop": 0.01},
}
FIGURE = {"minilm": "embedding_cosine_min", "ppocr_det": "iou_min", "ppocr_rec": "top1_agreement_min",
          "ppocr_cls": "cosine_min"}
# hand-written recipes: label, quantization option file, what a user would change[, passes option]
HAND: dict[str, list[tuple[Any, ...]]] = {
    "minilm": [("dynamic_int8", "dynamic_int8", {}), ("static_int8", "static_int8", {}),
               ("expert: transformer + dynamic_int8", "dynamic_int8", {}, "transformer")],
    "ppocr_det": [("static_int8", "static_int8", {}), ("static_int8_per_tensor", "static_int8", {"per_channel": False})],
    "ppocr_rec": [("static_int8", "static_int8", {}), ("static_int8_per_tensor", "static_int8", {"per_channel": False})],
    "ppocr_cls": [("static_int8", "static_int8", {})],
}
AUTO_SPACE: dict[str, dict[str, Any]] = {  # search space of models without an <model>_auto recipe
    "ppocr_det": {"modes": ["static"], "per_channel": [True, False]},
    "ppocr_rec": {"modes": ["static", "dynamic"], "per_channel": [True, False]},
}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _quant(option: str, changes: dict[str, Any]) -> dict[str, Any]:
    data = dict(_yaml(ROOT / "conf" / "quantization" / f"{option}.yaml"))
    data.pop("defaults", None)
    data.update(changes)
    return data


def _auto_recipe(model: str) -> tuple[str, dict[str, Any], dict[str, str], int]:
    """(passes option, search space overrides, target session_config, fidelity samples) of
    conf/recipe/<model>_auto.yaml; the evaluate default's samples, bounded by the 32 every model has."""
    default_samples = _yaml(ROOT / "conf" / "evaluate" / "default.yaml")["fidelity_samples"]
    path = ROOT / "conf" / "recipe" / f"{model}_auto.yaml"
    if not path.is_file():
        return "default", AUTO_SPACE.get(model, {}), {}, 32
    recipe = _yaml(path)
    passes = "default"
    for entry in recipe.get("defaults", []):
        if isinstance(entry, dict) and "override /passes@passes" in entry:
            passes = entry["override /passes@passes"]
    space = (recipe.get("quantization") or {}).get("space", {})
    samples = (recipe.get("evaluate") or {}).get("fidelity_samples", default_samples)
    return passes, space, dict((recipe.get("target") or {}).get("session_config", {})), samples


def _build(model: str, quantization: dict[str, Any], gates: dict[str, Any], runs: int,
           passes: str = "default", session_config: dict[str, str] | None = None, samples: int = 32) -> Any:
    from pipeline.schema import validate_build

    return validate_build(
        {
            "model": model,
            "passes": _yaml(ROOT / "conf" / "passes" / f"{passes}.yaml"),
            "quantization": quantization,
            "target": {"name": "cpu", "threads": 2, "session_config": dict(session_config or {})},
            "evaluate": {"warmup": 10, "runs": runs, "fidelity_samples": samples, "gates": gates},
        },
        f"builds.{model}",
    )


def bench_model(name: str, root: Path, runs: int, log: logging.Logger) -> dict[str, Any]:
    from pipeline.evaluate.gates import evaluate_gates, metric_value
    from pipeline.onnx_utils import model_path
    from pipeline.schema import validate_model
    from pipeline.search.screen import Bench, candidate_metrics
    from pipeline.stages.export import export_model
    from pipeline.stages.passes import run_passes
    from pipeline.stages.prepare import prepare_model
    from pipeline.stages.quantize import quantize_build

    spec = validate_model(_yaml(ROOT / "conf" / "model" / f"{name}.yaml"), f"models.{name}")
    src, export, passes = root / "source", root / "export", root / "passes"
    t0 = time.perf_counter()
    if not model_path(export).exists():
        prepare_model(spec, src, log)
        export_model(spec, src, export, log)
    gates = GATES[name]
    auto_passes, auto_space, session_config, samples = _auto_recipe(name)
    auto = _quant("auto", {"space": {**_quant("auto", {})["space"], **auto_space}})
    builds, passes_of = {}, {}
    for label, opt, changes, *hand_passes in HAND[name]:
        passes_of[label] = hand_passes[0] if hand_passes else "default"
        builds[label] = _build(name, _quant(opt, changes), gates, runs, passes_of[label], session_config, samples)
    builds["auto"] = _build(name, auto, gates, runs, auto_passes, session_config, samples)
    passes_of["auto"] = auto_passes
    for option in {*passes_of.values()}:  # each passes option once; "default" is the fp32-optimized row
        label = next(lab for lab, opt in passes_of.items() if opt == option)
        run_passes(builds[label], spec, export, root / f"passes-{option}", log)
    passes = root / "passes-default" if "default" in passes_of.values() else root / f"passes-{auto_passes}"
    seconds: dict[str, float] = {}
    for label, build in builds.items():
        t = time.perf_counter()
        quantize_build(build, spec, root / f"passes-{passes_of[label]}", root / label, log, build_name=label,
                       export_dir=export)
        seconds[label] = time.perf_counter() - t
    bench = Bench(builds["auto"], spec, export, log)
    paths = {label: model_path(root / label) for label in builds}
    paths["fp32_passes"] = model_path(passes)
    speed = bench.speed(paths, 10, runs, 10)
    rows = {}
    for label, path in paths.items():
        quality = bench.quality(path, samples)  # as the recipe's evaluate reads them
        metrics = candidate_metrics(spec.task, quality, speed[label], 0.0)
        result = evaluate_gates(metrics, gates)
        rows[label] = {
            "speedup": speed[label]["speedup"],
            "interval": speed[label]["interval"],
            "p50_ms": speed[label]["p50_ms"],
            "figure": metric_value(metrics, f"fidelity.{FIGURE[name]}"),
            "gates_passed": result["passed"],
            "failures": result["failures"],
        }
    search = json.loads((root / "auto" / "search.json").read_text())
    return {
        "model": name,
        "reference_p50_ms": speed["reference"]["p50_ms"],
        "rows": rows,
        "choice": search["choice"],
        "mixed": [
            {k: m.get(k) for k in ("parent", "passing", "ranked_nodes")} | {"steps": len(m.get("steps", []))}
            for m in search["mixed_precision"]
        ],
        "quantize_seconds": seconds,
        "total_seconds": time.perf_counter() - t0,
    }


def report(result: dict[str, Any]) -> None:
    name, rows = result["model"], result["rows"]
    print(f"\n== {name}  (fp32 export p50 {result['reference_p50_ms']:.3f} ms; gates {GATES[name]})")
    print(f"{'build':<26}{'speedup':>9}  {'noise':>13}  {FIGURE[name]:>22}  gates")
    for label, r in rows.items():
        lo, hi = r["interval"]
        fig = "n/a" if r["figure"] is None else f"{r['figure']:.5f}"
        print(f"{label:<26}{r['speedup']:>8.2f}x  {lo:>5.2f}-{hi:<5.2f}x  {fig:>22}  "
              f"{'pass' if r['gates_passed'] else 'FAIL: ' + '; '.join(r['failures'])}")
    hand = [lab for lab in rows if lab not in ("auto", "fp32_passes") and rows[lab]["gates_passed"]]
    best = max(hand, key=lambda lab: rows[lab]["speedup"]) if hand else None
    a = rows["auto"]
    if best:
        b = rows[best]
        print(f"best hand-written recipe: {best} {b['speedup']:.2f}x ({FIGURE[name]} {b['figure']:.5f})"
              f"  |  searched build: {a['speedup']:.2f}x ({FIGURE[name]} {a['figure']:.5f})")
    else:
        print(f"no hand-written recipe passes its gates  |  searched build: {a['speedup']:.2f}x "
              f"({FIGURE[name]} {a['figure']:.5f}, gates {'pass' if a['gates_passed'] else 'fail'})")
    print(f"search chose {result['choice']['chosen']} [{result['choice']['verdict']}]: {result['choice']['reason']}")
    for m in result["mixed"]:
        print(f"mixed precision from {m['parent']}: {m['steps']} step(s), passing: {m['passing']}")
    print(f"(search took {result['quantize_seconds']['auto']:.0f} s; model total {result['total_seconds']:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ppocr_cls", "ppocr_rec", "ppocr_det", "minilm"], choices=sorted(GATES))
    parser.add_argument("--runs", type=int, default=200, help="timed runs per build in the final interleaved run")
    parser.add_argument("--work", help="scratch folder (kept; default: a temporary folder)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log = logging.getLogger("bench_search")
    log.setLevel(logging.INFO)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="onnxbuild-bench-search-"))
    results = []
    for name in args.models:
        result = bench_model(name, work / name, args.runs, log)
        report(result)
        results.append(result)
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
