"""A model over 2 GB through the pipeline: wall time and peak memory of each step.

    .venv/bin/python benchmarks/bench_large_onnx.py                 # ~2.4 GB model in a temp dir
    .venv/bin/python benchmarks/bench_large_onnx.py --layers 3      # a smaller run (~0.8 GB)
    .venv/bin/python benchmarks/bench_large_onnx.py --keep DIR      # keep the artifacts in DIR

The model is a chain of ``--layers`` MatMul+Relu blocks with ``--dim`` x ``--dim`` float32 weights
(9 x 8192^2 x 4 B = 2.4 GB by default), written tensor by tensor straight into external data at
opset 13, so generating it never holds more than one weight in memory. Each pipeline step then runs
in a fresh interpreter (so its peak RSS is its own), through the same functions the DVC stages call:

1. ``prepare``  - the ONNX source: checker (path-based), external-data checks, snapshot copy;
2. ``export``   - reference outputs of the unmodified model in ONNX Runtime, opset 13 -> 17 with
                  onnx.version_converter on the weight-free graph, weights streamed into
                  ``model.onnx.data``, verification run in ONNX Runtime;
3. ``passes``   - ``shape_inference`` (path-based ONNX shape inference);
4. ``quantize`` - ``dynamic_int8`` (ONNX Runtime's quantize_dynamic with external data);
5. ``run``      - load the int8 artifact in ONNX Runtime and run one batch.

Prints a Markdown table (step, seconds, peak RSS, output size). Numbers depend on the machine and
on what else runs on it; the script makes no assertion about them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GENERATE = """
import numpy as np, onnx
from onnx import TensorProto, helper
from pathlib import Path

out = Path(OUT); out.mkdir(parents=True, exist_ok=True)
dim, layers = DIM, LAYERS
rng = np.random.default_rng(0)
nodes, inits = [], []
offset = 0
with open(out / "weights.bin", "wb") as fh:
    for i in range(layers):
        w = (rng.standard_normal((dim, dim), dtype=np.float32) / np.sqrt(dim)).astype(np.float32)
        fh.write(w.tobytes())
        t = TensorProto(name=f"W{i}", data_type=TensorProto.FLOAT, dims=[dim, dim])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(w.nbytes))):
            e = t.external_data.add(); e.key = k; e.value = v
        offset += w.nbytes
        del w
        inits.append(t)
        src = "x" if i == 0 else f"r{i - 1}"
        nodes.append(helper.make_node("MatMul", [src, f"W{i}"], [f"h{i}"]))
        nodes.append(helper.make_node("Relu", [f"h{i}"], ["y" if i == layers - 1 else f"r{i}"]))
graph = helper.make_graph(nodes, "large",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dim])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", dim])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 7
(out / "large.onnx").write_bytes(model.SerializeToString())
print("RESULT=" + str(offset))
"""

STEPS = {
    "prepare": """
        info = prepare_model(spec, work / "source", log)
        result = info["size_mb"]
    """,
    "export": """
        info = export_model(spec, work / "source", work / "export", log)
        result = info["changes"]["opset"]
    """,
    "passes": """
        run_passes(build, spec, work / "export", work / "passes", log)
        result = "shape_inference"
    """,
    "quantize": """
        info = quantize_build(build, spec, work / "passes", work / "model", log)
        result = info["size_mb_after"]
    """,
    "run": """
        import numpy as np
        from pipeline.sources.common import ort_session
        sess = ort_session(work / "model" / "model.onnx", threads=2)
        y = sess.run(None, {"x": np.ones((4, DIM), np.float32)})[0]
        result = list(y.shape)
    """,
}

PRELUDE = """
import logging, resource, time, json
from pathlib import Path
from pipeline.schema import validate_build, validate_model
from pipeline.stages.prepare import prepare_model
from pipeline.stages.export import export_model
from pipeline.stages.passes import run_passes
from pipeline.stages.quantize import quantize_build

logging.basicConfig(level=logging.WARNING)
log = logging.getLogger("bench")
work = Path(WORK)
spec = validate_model({"framework": "onnx", "path": str(work / "src" / "large.onnx"), "watch": "x",
    "export": {"opset": 17, "dims": {"batch": 1}, "atol": 1e-3, "rtol": 1e-3},
    "reference": {"num_samples": 32}, "task": "other"}, "models.large")
build = validate_build({"model": "large", "passes": [{"name": "shape_inference"}],
    "quantization": {"name": "dynamic_int8"}, "target": {"name": "cpu"}}, "builds.large")
t0 = time.perf_counter()
"""

EPILOGUE = """
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT=" + json.dumps({"seconds": seconds, "peak_rss": peak, "result": result}))
"""


def _run(code: str, cwd: Path) -> dict:
    """Run ``code`` in a fresh interpreter; returns its RESULT line (seconds, peak_rss, result)."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"step failed (exit {proc.returncode})")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))
    return json.loads(line[len("RESULT="):])


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=9)
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: a temp dir, removed)")
    args = parser.parse_args()

    tmp = None
    if args.keep:
        work = args.keep
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="onnxbuild-large-")
        work = Path(tmp.name)
    rows = []
    try:
        subs = {"OUT": repr(str(work / "src")), "DIM": str(args.dim), "LAYERS": str(args.layers)}
        code = GENERATE
        for k, v in subs.items():
            code = code.replace(k, v)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=work)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-4000:])
        weights = int(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))[7:])
        rows.append(("generate", time.perf_counter() - start, None, _size(work / "src"), ""))
        print(f"model: {args.layers} x MatMul {args.dim}x{args.dim} float32, weights {weights / 1e9:.2f} GB", flush=True)

        prelude = PRELUDE.replace("WORK", repr(str(work)))
        outputs = {"prepare": "source", "export": "export", "passes": "passes", "quantize": "model", "run": None}
        for step, body in STEPS.items():
            code = prelude + textwrap.dedent(body).replace("DIM", str(args.dim)) + EPILOGUE
            result = _run(code, work)
            size = _size(work / outputs[step]) if outputs[step] else None
            rows.append((step, result["seconds"], result["peak_rss"], size, json.dumps(result["result"])))
            print(f"{step}: {result['seconds']:.1f} s, peak RSS {result['peak_rss'] / 1e9:.2f} GB", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()

    print()
    print("| step | seconds | peak RSS (GB) | output on disk (GB) | result |")
    print("|---|---:|---:|---:|---|")
    for step, seconds, peak, size, result in rows:
        peak_s = "-" if peak is None else f"{peak / 1e9:.2f}"
        size_s = "-" if size is None else f"{size / 1e9:.2f}"
        print(f"| {step} | {seconds:.1f} | {peak_s} | {size_s} | {result} |")


if __name__ == "__main__":
    main()
