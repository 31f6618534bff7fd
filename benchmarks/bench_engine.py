"""Engine benchmark: is our measurement honest, are stage start-ups light, does int8 pay off?

    .venv/bin/python benchmarks/bench_engine.py [--rounds 5] [--runs 300]

Prints, in one run:

1. harness overhead: the p50 that ``pipeline.evaluate.evaluate_build`` reports against a minimal
   ``session.run`` loop on the same artifact with the same session options (rounds alternate the
   two so machine noise hits both alike; the aim is a ratio of at most 1.03);
2. start-up of each stage entry point that needs no framework (``python -m pipeline.stages.X --help``
   and ``python -c "import pipeline.stages.X"``), against a bare ``python -c pass``, and whether
   torch / TensorFlow got imported (the aim: under 1.5 s, never);
3. speed-up of each int8 build over the plain fp32 export of its model, re-measured here in
   alternating blocks, beside the speed-up its metrics file recorded.

It uses the project's artifacts (``artifacts/builds/*/model``, ``metrics/builds/*.json``,
``params.yaml``) when they exist; otherwise it builds a stand-in for the digits CNN (same layer
shapes, random weights) and its static int8 QDQ quantization in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline.evaluate.metrics import evaluate_build  # noqa: E402
from pipeline.evaluate.latency import benchmark_lock, measure_interleaved, stats_ms  # noqa: E402
from pipeline.schema import BuildSpec, EvaluateSpec, ModelSpec, Selected  # noqa: E402
from pipeline.targets import get_target  # noqa: E402
from pipeline.targets.cpu import CpuParams  # noqa: E402

STAGES = ("passes", "quantize", "evaluate", "report")
FRAMEWORKS = ("torch", "tensorflow", "keras", "tf2onnx")
STARTUP_LIMIT_S = 1.5
OVERHEAD_LIMIT = 1.03
LOG = logging.getLogger("bench")
PROBE_PARAMS = """\
models:
  probe: {framework: onnx, path: probe.onnx, watch: probe.onnx, task: classification}
builds:
  probe:
    model: probe
    passes: [{name: shape_inference, params: {}}]
    quantization: {name: none}
    target: {name: cpu, threads: 1}
"""


# ------------------------------------------------------------------------------------------------
# Cases: (name, build spec, model spec, artifact dir, export dir, recorded metrics or None)
# ------------------------------------------------------------------------------------------------


def project_cases(project: Path) -> list[tuple]:
    """Builds of the project that have an artifact, an export and a params.yaml entry."""
    params_file = project / "params.yaml"
    if not params_file.is_file():
        return []
    from pipeline.stages.runner import build_spec, load_params

    params = load_params(params_file)
    cases = []
    for name in sorted(params.get("builds") or {}):
        try:
            build, model = build_spec(params, name, str(params_file))
        except Exception as exc:  # a build this checkout cannot validate: skip it, say so
            print(f"  (skipping build {name}: {exc})")
            continue
        artifact = project / "artifacts" / "builds" / name / "model"
        export = project / "artifacts" / "models" / build.model / "export"
        if not (artifact / "model.onnx").is_file() or not (export / "reference.npz").is_file():
            continue
        metrics_file = project / "metrics" / "builds" / f"{name}.json"
        recorded = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        cases.append((name, build, model, artifact, export, recorded))
    return cases


def _digits_cnn_standin(path: Path, width: int = 64) -> None:
    """The digits CNN's layer shapes (BatchNorm folded into conv bias) with seeded random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []
    channels = [(1, width), (width, 2 * width), "pool", (2 * width, 2 * width), (2 * width, 2 * width), "pool"]
    x = "input"
    for i, layer in enumerate(channels):
        if layer == "pool":
            nodes.append(helper.make_node("MaxPool", [x], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            x = f"p{i}"
            continue
        cin, cout = layer
        w = rng.normal(0, np.sqrt(2 / (cin * 9)), size=(cout, cin, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        x = f"r{i}"
    nodes.append(helper.make_node("Flatten", [x], ["flat"]))
    fc = rng.normal(0, np.sqrt(1 / (8 * width)), size=(8 * width, 10)).astype(np.float32)
    inits += [numpy_helper.from_array(fc, "fc_w"), numpy_helper.from_array(np.zeros(10, np.float32), "fc_b")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "digits_cnn_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


def synthetic_cases(tmp: Path, runs: int) -> list[tuple]:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    export = tmp / "models" / "standin" / "export"
    _digits_cnn_standin(export / "model.onnx")
    x = images[-256:]
    logits = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.savez(export / "reference.npz", **{"input/input": x, "output/logits": logits})

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": images[i : i + 16]} for i in range(0, 256, 16)])

        def get_next(self):
            return next(self.batches, None)

    fp32 = tmp / "builds" / "standin_fp32" / "model"
    fp32.mkdir(parents=True)
    (fp32 / "model.onnx").write_bytes((export / "model.onnx").read_bytes())
    int8 = tmp / "builds" / "standin_int8" / "model"
    int8.mkdir(parents=True)
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" advice is noise here
    quantize_static(
        str(export / "model.onnx"),
        str(int8 / "model.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    model = ModelSpec(framework="onnx", path="standin.onnx", watch="standin.onnx", task="classification")
    cases = []
    for name, artifact, quant in (("standin_fp32", fp32, "none"), ("standin_int8", int8, "static_int8")):
        build = BuildSpec(
            model="standin",
            quantization=Selected(name=quant, params=None),
            target=Selected(name="cpu", params=CpuParams(threads=1)),
            evaluate=EvaluateSpec(warmup=10, runs=runs, batch_size=1, fidelity_samples=32),
        )
        cases.append((name, build, model, artifact, export, None))
    return cases


# ------------------------------------------------------------------------------------------------
# 1. Harness overhead
# ------------------------------------------------------------------------------------------------


def minimal_p50(session, feeds: dict, warmup: int, runs: int) -> float:
    """The simplest honest loop: time each session.run, take the median (ms)."""
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def harness_overhead(case: tuple, rounds: int, runs: int) -> dict:
    name, build, model, artifact, export, _ = case
    build = build.model_copy(update={"evaluate": build.evaluate.model_copy(update={"runs": runs})})
    target = get_target(build.target.name)
    params = build.target.params
    session = target.session(artifact / "model.onnx", params)  # the same options evaluate uses
    ref = np.load(export / "reference.npz")
    feeds = {}
    for spec in session.get_inputs():
        arr = ref[f"input/{spec.name}"][: build.evaluate.batch_size]
        feeds[spec.name] = np.ascontiguousarray(arr.astype(np.float16 if "float16" in spec.type else arr.dtype))
    ours, minimal = [], []
    for i in range(rounds):
        order = ("ours", "minimal") if i % 2 == 0 else ("minimal", "ours")
        for which in order:
            if which == "ours":
                ours.append(evaluate_build(build, model, artifact, export, LOG, name=name)["latency_ms"]["p50"])
            else:
                with benchmark_lock():
                    minimal.append(minimal_p50(session, feeds, build.evaluate.warmup, runs))
    p_ours, p_min = statistics.median(ours), statistics.median(minimal)
    return {"build": name, "ours": p_ours, "minimal": p_min, "ratio": p_ours / p_min}


# ------------------------------------------------------------------------------------------------
# 2. Stage start-up
# ------------------------------------------------------------------------------------------------


def _wall(cmd: list[str], repeats: int, cwd: Path = ROOT) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONNXBUILD_LOG_DIR": str(Path(tempfile.gettempdir()) / "bench_logs")}
    best, proc = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        best = min(best, time.perf_counter() - t0)
    return best, proc


def startup(repeats: int) -> list[dict]:
    py = sys.executable
    base, _ = _wall([py, "-c", "pass"], repeats)
    rows = [{"what": "python -c pass (baseline)", "seconds": base, "frameworks": "-", "ok": True}]
    check = "import sys; print(','.join(sorted({m.split('.')[0] for m in sys.modules} & set(%r))))" % (FRAMEWORKS,)
    for stage in STAGES:
        module = f"pipeline.stages.{stage}"
        t_help, proc = _wall([py, "-m", module, "--help"], repeats)
        rows.append({"what": f"python -m {module} --help", "seconds": t_help, "frameworks": "",
                     "ok": proc.returncode == 0 and t_help < STARTUP_LIMIT_S,
                     "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else ""})
        t_imp, proc = _wall([py, "-c", f"import {module}; {check}"], repeats)
        loaded = proc.stdout.strip() if proc.returncode == 0 else "?"
        rows.append({"what": f"python -c 'import {module}'", "seconds": t_imp, "frameworks": loaded or "none",
                     "ok": proc.returncode == 0 and not loaded and t_imp < STARTUP_LIMIT_S,
                     "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else ""})
    # "to work": run each stage on a valid params.yaml whose inputs are missing. It parses the
    # params, validates the build, imports what the stage needs and stops where real work would start.
    with tempfile.TemporaryDirectory(prefix="bench_probe-") as tmp:
        (Path(tmp) / "params.yaml").write_text(PROBE_PARAMS)
        probe = {
            "passes": ["--build", "probe", "--export", "missing/export", "--out", "out/passes"],
            "quantize": ["--build", "probe", "--input", "missing/passes", "--out", "out/model"],
            "evaluate": ["--build", "probe", "--artifact", "missing/model", "--export", "missing/export",
                         "--out", "out/probe.json"],
            # the report lists every build of its params file: a missing one stops it before any work
            "report": ["--metrics-dir", "missing/metrics", "--out", "out/reports", "--params", "missing/params.yaml"],
        }
        for stage in STAGES:
            argv = [f"pipeline.stages.{stage}", "--params", "params.yaml", *probe[stage]]
            code = (
                "import runpy, sys\n"
                f"sys.argv = {argv!r}\n"
                "try:\n"
                f"    runpy.run_module('pipeline.stages.{stage}', run_name='__main__')\n"
                "except SystemExit:\n"
                "    pass\n"
                f"{check}\n"
            )
            t_work, proc = _wall([py, "-c", code], repeats, cwd=Path(tmp))
            loaded = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
            err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
            error = "" if "missing" in err else f"(unexpected: {err})"  # it must stop at the missing inputs
            rows.append({"what": f"{stage} stage to work (params validated, inputs checked)", "seconds": t_work,
                         "frameworks": loaded or "none", "ok": not loaded and not error and t_work < STARTUP_LIMIT_S,
                         "error": error})
    return rows


# ------------------------------------------------------------------------------------------------
# 3. int8 over fp32
# ------------------------------------------------------------------------------------------------


def int8_speedups(cases: list[tuple], runs: int) -> list[dict]:
    rows = []
    for name, build, model, artifact, export, recorded in cases:
        if "int8" not in build.quantization.name:
            continue
        target = get_target(build.target.name)
        params = build.target.params
        ref_sess = target.session(export / "model.onnx", params)
        sess = target.session(artifact / "model.onnx", params)
        from pipeline.evaluate.metrics import Reference
        from pipeline.execution import one_at_a_time, step_feeds

        ref = Reference(export / "reference.npz")
        batch = 1 if one_at_a_time(model) else build.evaluate.batch_size
        feeds = step_feeds(ref_sess, ref.inputs, model, batch)  # a stream: one mid-stream step, state included
        with benchmark_lock():
            times = measure_interleaved({"fp32": (ref_sess, feeds), "int8": (sess, feeds)}, 20, runs, 10)
        fp32, int8 = stats_ms(times["fp32"])["p50"], stats_ms(times["int8"])["p50"]
        rows.append({
            "build": name,
            "quantization": build.quantization.name,
            "fp32_p50": fp32,
            "int8_p50": int8,
            "speedup": fp32 / int8,
            "recorded": None if recorded is None else recorded.get("speedup"),
            "threads": params.threads,
            "batch": batch,
        })
    return rows


# ------------------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds for the harness comparison")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per measurement")
    parser.add_argument("--max-builds", type=int, default=3, help="builds to use for the harness comparison")
    parser.add_argument("--project", type=Path, default=ROOT, help="project folder with artifacts (default: this repo)")
    parser.add_argument("--startup-repeats", type=int, default=3, help="start-up timings per command (best kept)")
    args = parser.parse_args()
    start = time.perf_counter()

    from pipeline.hardware import cpu_info

    cpu = cpu_info()
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores; ISA: {', '.join(k for k, v in cpu['isa'].items() if v)})")
    print(f"Python {sys.version.split()[0]}; benchmark lock held during every measurement\n")

    with tempfile.TemporaryDirectory(prefix="bench_engine-") as tmp:
        cases = project_cases(args.project.resolve())
        source = f"project artifacts in {args.project} (artifacts/builds, metrics/builds)"
        if not cases:
            source = "a stand-in digits CNN and its static int8 QDQ build, built in a temp dir (no artifacts yet)"
            cases = synthetic_cases(Path(tmp), args.runs)
        print(f"Artifacts: {source}\n")

        print("1. Harness overhead: p50 reported by evaluate_build vs a minimal session.run loop")
        rows = [harness_overhead(c, args.rounds, args.runs) for c in cases[: args.max_builds]]
        print(_table(
            ["build", "evaluate p50 ms", "minimal loop p50 ms", "ratio", f"<= {OVERHEAD_LIMIT}"],
            [[r["build"], f"{r['ours']:.4f}", f"{r['minimal']:.4f}", f"{r['ratio']:.3f}",
              "yes" if r["ratio"] <= OVERHEAD_LIMIT else "NO"] for r in rows],
        ))
        print(f"({args.rounds} alternating rounds of {args.runs} timed runs each; median of the rounds' p50)\n")

        print(f"2. Stage start-up (best of {args.startup_repeats}; aim < {STARTUP_LIMIT_S} s, no framework imported)")
        srows = startup(args.startup_repeats)
        print(_table(
            ["command", "seconds", "frameworks imported", "ok"],
            [[r["what"], f"{r['seconds']:.3f}", r["frameworks"] or "-",
              ("yes" if r["ok"] else "NO " + r.get("error", ""))] for r in srows],
        ))
        print()

        print("3. int8 over fp32 (the model's plain fp32 export), re-measured here in alternating blocks")
        irows = int8_speedups(cases, args.runs)
        if irows:
            print(_table(
                ["build", "quantization", "threads", "batch", "fp32 p50 ms", "int8 p50 ms", "speedup",
                 "speedup in metrics file"],
                [[r["build"], r["quantization"], str(r["threads"]), str(r["batch"]), f"{r['fp32_p50']:.4f}",
                  f"{r['int8_p50']:.4f}", f"{r['speedup']:.2f}x",
                  "-" if r["recorded"] is None else f"{r['recorded']:.2f}x"] for r in irows],
            ))
        else:
            print("no int8 builds found")
    print(f"\n(total {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
