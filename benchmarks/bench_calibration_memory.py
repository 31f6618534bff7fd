"""Peak memory of static int8 calibration: the project's bounded calibration against ONNX Runtime's
own unchunked calibration, on PaddleOCR's PP-OCRv4 text detector (rapidocr-onnxruntime) with 480x480
synthetic pages (pipeline/data/ocr.py).

Each run is a child process (this script with ``--child``) so its peak RSS (``ru_maxrss``) is its
own; the child prints one JSON line. The unchunked runs use fewer samples: ONNX Runtime keeps every
calibrated activation of every sample (about 12.5 GB for 64 pages with minmax, killed at 23 GB for
128 with percentile, in earlier measurements). The bounded and unchunked quantized models of the
same samples are also compared scale by scale.

    python benchmarks/bench_calibration_memory.py                       # 256 bounded, 16 unchunked
    python benchmarks/bench_calibration_memory.py --samples 256 --unchunked-samples 16 32
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "pkg://rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
TARGET_GB = 3.0  # issue 8: 256 pages of 480x480 under 3 GB peak RSS
METHODS = ("minmax", "percentile")


def _pkg_path() -> Path:
    import importlib.util

    package, _, rel = MODEL[len("pkg://") :].partition("/")
    spec = importlib.util.find_spec(package)
    return Path(spec.origin).parent / rel


def child(mode: str, method: str, samples: int, out: Path, budget: float | None) -> dict:
    """One calibration + quantization; returns peak RSS and the run's numbers."""
    import logging
    import resource

    from pipeline.schema import Factory
    from pipeline.quantization.base import QuantContext
    from pipeline.quantization.static import Calibration, StaticInt8

    logging.basicConfig(level=logging.WARNING)
    log = logging.getLogger("bench")
    work = out.parent / f"work_{mode}_{method}_{samples}"
    work.mkdir(parents=True, exist_ok=True)
    dataset = Factory(**{"_target_": "pipeline.data.ocr.pages", "split": "calib", "n": samples})
    cal = Calibration(method=method, num_samples=samples, dataset=dataset, memory_budget_gb=budget)
    params = StaticInt8.Params(calibration=cal)
    ctx = QuantContext(model_spec=None, log=log, work_dir=work, key="builds.bench.quantization")
    t0 = time.perf_counter()
    info: dict = {}
    if mode == "bounded":
        info = StaticInt8().run(_pkg_path(), out, params, ctx)
    else:
        info = _unchunked(params, ctx, out)
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": mode,
        "method": method,
        "samples": samples,
        "peak_rss_gb": round(peak_kb / 2**20, 3),
        "seconds": round(seconds, 1),
        "calibration_memory": info.get("calibration_memory"),
    }


def _unchunked(params, ctx, out: Path) -> dict:
    """ONNX Runtime's quantize_static with every feed in one reader (the behaviour before bounding)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from pipeline.quantization.calibration import batches, calibration_samples, data_reader
    from pipeline.quantization.preprocess import prepare
    from pipeline.quantization.static import METHODS as ORT_METHODS

    cal = params.calibration
    model_in, _ = prepare(_pkg_path(), ctx.work_dir, min_opset=13, run_preprocess=True, log=ctx.log)
    arrays, _ = calibration_samples(model_in, cal.dataset, cal.num_samples, cal.seed, ctx)
    extra = {"CalibPercentile": cal.percentile} if cal.method == "percentile" else {}
    quantize_static(
        str(model_in),
        str(out),
        data_reader(batches(model_in, arrays)),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, ORT_METHODS[cal.method]),
        extra_options=extra,
    )
    return {}


def scales(path: Path) -> dict:
    """Every QuantizeLinear scale initializer of a QDQ model (activation scales: the calibration's result)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[1] in inits:
            found[node.input[0]] = numpy_helper.to_array(inits[node.input[1]])
    return found


def run_child(mode: str, method: str, samples: int, tmp: Path, budget: float | None) -> dict:
    out = tmp / f"{mode}_{method}_{samples}.onnx"
    cmd = [sys.executable, __file__, "--child", mode, method, str(samples), str(out)]
    if budget is not None:
        cmd += ["--budget", str(budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"mode": mode, "method": method, "samples": samples, "error": f"exit {proc.returncode}: {tail}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["model"] = str(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=256, help="pages for the bounded runs")
    parser.add_argument("--unchunked-samples", type=int, nargs="+", default=[16], help="pages for unchunked runs")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--budget", type=float, default=None, help="memory_budget_gb (default: auto)")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "METHOD", "N", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, method, n, out = args.child
        print(json.dumps(child(mode, method, int(n), Path(out), args.budget)))
        return

    import tempfile

    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-calib-") as tmp_name:
        tmp = Path(tmp_name)
        for method in args.methods:
            for n in args.unchunked_samples:
                rows.append(run_child("unchunked", method, n, tmp, None))
                rows.append(run_child("bounded", method, n, tmp, args.budget))
                a, b = rows[-2].get("model"), rows[-1].get("model")
                if a and b:
                    sa, sb = scales(Path(a)), scales(Path(b))
                    same = sorted(sa) == sorted(sb)
                    diff = max((float(np.max(np.abs(sa[k] - sb[k]) / np.abs(sa[k]))) for k in sa), default=0.0)
                    rows[-1]["scales_vs_unchunked"] = (
                        f"{len(sa)} scales, max rel diff {diff:.2e}" if same else "different quantized tensors"
                    )
            rows.append(run_child("bounded", method, args.samples, tmp, args.budget))

    print(f"\nStatic int8 calibration of PP-OCRv4 det, 480x480 pages (target: {args.samples} pages under {TARGET_GB} GB)")
    print(f"{'mode':<10} {'method':<11} {'pages':>5} {'peak RSS GB':>11} {'s':>7}  {'batch/chunk':<12} notes")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<10} {r['method']:<11} {r['samples']:>5} {'-':>11} {'-':>7}  {'':<12} {r['error']}")
            continue
        mem = r.get("calibration_memory") or {}
        shape = f"{mem['batch']}/{mem['chunk_samples']}" if mem else "all at once"
        notes = r.get("scales_vs_unchunked", "")
        if mem:
            notes = (notes + "; " if notes else "") + f"budget {mem['budget_gb']} GB, planned {mem['planned_peak_gb']} GB"
        print(f"{r['mode']:<10} {r['method']:<11} {r['samples']:>5} {r['peak_rss_gb']:>11.2f} {r['seconds']:>7.1f}  {shape:<12} {notes}")


if __name__ == "__main__":
    main()
