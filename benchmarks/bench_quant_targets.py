"""Issue 8's speed targets on this CPU: what reaches them, by hand, in one interleaved run per round.

    .venv/bin/python benchmarks/bench_quant_targets.py [--model minilm|ppocr_det|all] [--rounds 5] [--runs 60]

Every candidate is built here from the model's fp32 export (``artifacts/models/M/export``; build it
with ``dvc repro export@M``) with the project's own passes and quantizers, then all of them and the
export are timed together (2 threads, batch 1, ONNX Runtime at level ``all``), ``--rounds`` times;
the spread of the per-round ratios is the noise. A candidate that needs session settings (a
``session_config`` of its target) is compared with the export run with the SAME settings ("vs its
export"), as a build measures it, and with the plain export ("vs plain export").
Besides p50 ratios the table gives the ratio of the fastest runs ("min ratio"): on a shared host
other processes only ever add time, so minima are the steadier figure when the load moves.

minilm (all-MiniLM-L6-v2, seq 128; fidelity: mean-pooled embedding cosine, worst sentence, on the 64
sentences evaluate reads and on all 256 reference sentences):
- the hand expert: transformer fusions + dynamic int8 per-channel (conf/recipe/minilm_int8_expert.yaml);
- weight-only blockwise int8/int4 (MatMulNBits, accuracy_level 4: MLAS computes in int8 with VNNI);
- the searched recipe (conf/recipe/minilm_auto.yaml): target with denormals flushed and
  SkipLayerNormFusion disabled, transformer variant with SkipLayerNormalization and BiasGelu left
  unfused, SmoothQuant (alpha 0.7, 64 calibration passages), dynamic int8, with the nodes of
  ``--keep-float`` (default: what the last build's search kept in float, from its search.json) in float.
ppocr_det (PP-OCRv4 detector, 480x480; fidelity: IoU of the maps binarised at 0.3, worst page):
- fp32 with the decomposed hard-swish fused (fuse_hardswish), and with fold_affine too
  (conf/passes/paddle.yaml: the searched build's passes);
- static int8 per-channel on that graph: on Conv with the search's exclusions, and on every op.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline.evaluate.latency import benchmark_lock, measure_interleaved, stats_ms  # noqa: E402

THREADS = 2
LOG = logging.getLogger("bench_quant_targets")
TUNED = {"session.set_denormal_as_zero": "1", "optimization.disable_specified_optimizers": "SkipLayerNormFusion"}
LEAN = {"enable_skip_layer_norm": False, "enable_bias_gelu": False}


def _model_spec(name: str):
    import yaml

    from pipeline.schema import validate_model

    return validate_model(yaml.safe_load((ROOT / f"conf/model/{name}.yaml").read_text()), f"models.{name}")


def _session(path: Path, config: dict[str, str] | None):
    from pipeline.targets import get_target

    target = get_target("cpu")
    return target.session(path, target.Params(name="cpu", threads=THREADS, session_config=dict(config or {})))


def _reference(export: Path) -> tuple[dict, dict]:
    ref = np.load(export / "reference.npz")
    inputs = {k[len("input/"):]: ref[k] for k in ref.files if k.startswith("input/")}
    outputs = {k[len("output/"):]: ref[k] for k in ref.files if k.startswith("output/")}
    return inputs, outputs


def _searched_float_nodes(build: str) -> list[str]:
    path = ROOT / "artifacts/builds" / build / "model" / "search.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    chosen = record["choice"]["chosen"]
    for cand in record["candidates"]:
        if cand["name"] == chosen:
            return list(cand.get("excluded_nodes", []))
    return []


# -- minilm ---------------------------------------------------------------------------------------


def minilm_candidates(tmp: Path, keep_float: list[str]) -> dict[str, tuple[Path, dict | None]]:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_transformer import _dynamic, _passes

    spec = _model_spec("minilm")
    export = ROOT / "artifacts/models/minilm/export/model.onnx"
    fused = _passes(export, tmp / "fused", "transformer")
    lean = _passes(export, tmp / "lean", "transformer", options=LEAN)

    def nbits(bits: int, block: int) -> Path:
        out = tmp / f"nbits{bits}_{block}" / "model.onnx"
        out.parent.mkdir(parents=True)
        q = MatMulNBitsQuantizer(onnx.load(str(fused)), bits=bits, block_size=block, accuracy_level=4)
        q.process()
        onnx.save(q.model.model, str(out))
        return out

    expert = _dynamic(fused, tmp / "expert", spec)
    cands = {
        "fp32 export": (export, None),
        "fp32 export, tuned target": (export, TUNED),
        "expert: fused + dynamic int8 (hand)": (expert, None),
        "expert, tuned target": (expert, TUNED),
        "fused + MatMulNBits 8-bit b128": (nbits(8, 128), None),
        "fused + MatMulNBits 8-bit b32": (nbits(8, 32), None),
        "fused + MatMulNBits 4-bit b32": (nbits(4, 32), None),
        "lean fused fp32, tuned target": (lean, TUNED),
        "lean fused + dynamic int8, tuned": (_dynamic(lean, tmp / "lean_q", spec), TUNED),
    }
    cands["lean + SmoothQuant 0.7 + dynamic int8, tuned (searched)"] = (
        _dynamic(lean, tmp / "lean_sq", spec, smoothing={"alpha": 0.7, "num_samples": 64}, nodes_to_exclude=keep_float),
        TUNED,
    )
    if keep_float:
        cands[f"lean + dynamic int8, {len(keep_float)} in float, tuned"] = (
            _dynamic(lean, tmp / "lean_qf", spec, nodes_to_exclude=keep_float), TUNED)
    return cands


def minilm_fidelity(session, inputs: dict, reference: dict) -> dict[str, float]:
    from pipeline.evaluate.task_metrics import embedding

    spec = _model_spec("minilm")
    names = [i.name for i in session.get_inputs()]
    n = len(inputs[names[0]])
    out = np.concatenate([session.run(None, {k: inputs[k][i : i + 16] for k in names})[0] for i in range(0, n, 16)])
    every = embedding(reference, {spec.fidelity.output: out}, inputs, spec.fidelity, False)
    head = embedding(
        {k: v[:64] for k, v in reference.items()}, {spec.fidelity.output: out[:64]},
        {k: v[:64] for k, v in inputs.items()}, spec.fidelity, False,
    )
    return {"worst of 64": head["embedding_cosine_min"], "worst of all": every["embedding_cosine_min"]}


# -- ppocr_det ------------------------------------------------------------------------------------


def ppocr_det_candidates(tmp: Path, keep_float: list[str]) -> dict[str, tuple[Path, dict | None]]:
    from pipeline.quantization.base import QuantContext
    from pipeline.quantization.static import Calibration, StaticInt8

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_transformer import _passes

    spec = _model_spec("ppocr_det")
    export = ROOT / "artifacts/models/ppocr_det/export/model.onnx"
    dims = dict(spec.export.dims)

    def static(src: Path, tag: str, ops: list[str] | None, exclude: list[str]) -> Path:
        work = tmp / tag
        work.mkdir(parents=True)
        params = StaticInt8.Params(
            per_channel=True, op_types_to_quantize=ops, nodes_to_exclude=list(exclude),
            calibration=Calibration(method="minmax", num_samples=64),
        )
        StaticInt8().run(src, work / "model.onnx", params, QuantContext(model_spec=spec, log=LOG, work_dir=work))
        return work / "model.onnx"

    # the hard-swish fusion alone, then with fold_affine too (conf/passes/paddle.yaml), through the
    # project's own pass list
    hardswish = _hardswish_only(export, tmp / "hs", dims)
    paddle = _passes(export, tmp / "paddle", "paddle", dims=dims)
    k = len(keep_float)
    return {
        "fp32 export": (export, None),
        "fp32 hard-swish fused": (hardswish, None),
        "fp32 hard-swish fused + fold_affine (paddle passes)": (paddle, None),
        f"paddle passes + static int8 Conv, {k} in float" + (" (the search's)" if k else ""): (
            static(paddle, "q", ["Conv"], keep_float), None),
        "paddle passes + static int8 every op": (static(paddle, "q_all", None, []), None),
    }


def _hardswish_only(src: Path, dst: Path, dims: dict[str, int]) -> Path:
    from pipeline.passes import PASSES, PassContext, run_pass_list

    out = dst / "model.onnx"
    run_pass_list(src, out, [("fuse_hardswish", PASSES["fuse_hardswish"].Params())],
                  PassContext(log=LOG, work_dir=dst, dims=dims))
    return out


def ppocr_det_fidelity(session, inputs: dict, reference: dict) -> dict[str, float]:
    (name,) = inputs
    (ref,) = reference.values()
    ious = []
    for i in range(len(inputs[name])):
        ours = session.run(None, {name: inputs[name][i : i + 1]})[0] > 0.3
        theirs = ref[i : i + 1] > 0.3
        union = (ours | theirs).sum()
        ious.append(1.0 if union == 0 else float((ours & theirs).sum() / union))
    return {"iou worst page": min(ious), "iou mean": float(np.mean(ious))}


MODELS = {
    "minilm": (minilm_candidates, minilm_fidelity, "minilm_auto"),
    "ppocr_det": (ppocr_det_candidates, ppocr_det_fidelity, "ppocr_det_auto"),
}


def bench(model: str, rounds: int, runs: int, keep_float: list[str] | None) -> None:
    from tabulate import tabulate

    build_cands, fidelity_of, build = MODELS[model]
    export_dir = ROOT / "artifacts/models" / model / "export"
    if not (export_dir / "model.onnx").is_file():
        print(f"error: {export_dir}/model.onnx not found: build it first (dvc repro export@{model})", file=sys.stderr)
        raise SystemExit(2)
    keep = _searched_float_nodes(build) if keep_float is None else keep_float
    inputs, reference = _reference(export_dir)
    feeds = {k: v[:1] for k, v in inputs.items()}
    with tempfile.TemporaryDirectory(prefix=f"bench-quant-{model}-") as tmp_name:
        cands = build_cands(Path(tmp_name), keep)
        sessions = {name: (_session(path, cfg), feeds) for name, (path, cfg) in cands.items()}
        fidelity = {name: fidelity_of(sess, inputs, reference) for name, (sess, _) in sessions.items()}
        ratios: dict[str, dict[str, list[float]]] = {n: {"own": [], "plain": [], "min": []} for n in cands}
        p50s: dict[str, list[float]] = {n: [] for n in cands}
        for r in range(rounds):
            with benchmark_lock(log=LOG):
                times = measure_interleaved(sessions, warmup=5, runs=runs, blocks=6)
            stats = {n: stats_ms(t) for n, t in times.items()}
            plain = stats["fp32 export"]
            exports = {repr(cfg): stats[n] for n, (_, cfg) in cands.items() if n.startswith("fp32 export")}
            for name, (_, cfg) in cands.items():
                own = exports[repr(cfg)]  # the export on the same session settings
                p50s[name].append(stats[name]["p50"])
                ratios[name]["own"].append(own["p50"] / stats[name]["p50"])
                ratios[name]["plain"].append(plain["p50"] / stats[name]["p50"])
                ratios[name]["min"].append(own["min"] / stats[name]["min"])
            LOG.info("%s: round %d of %d (fp32 export p50 %.2f ms)", model, r + 1, rounds, plain["p50"])

    def fmt(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"

    rows = [
        [name, "tuned" if cfg else "-", f"{statistics.median(p50s[name]):.2f}", fmt(ratios[name]["own"]),
         fmt(ratios[name]["plain"]), fmt(ratios[name]["min"]), *(f"{v:.4f}" for v in fidelity[name].values())]
        for name, (_, cfg) in cands.items()
    ]
    print(f"\n{model}: {THREADS} threads, batch 1, {rounds} interleaved rounds x {runs} runs; kept in float: {keep}")
    print(tabulate(rows, headers=["candidate", "session", "p50 ms", "vs its export (p50)", "vs plain export (p50)",
                                  "min ratio", *fidelity[next(iter(fidelity))]],
                   tablefmt="github", disable_numparse=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=[*MODELS, "all"], default="all")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=60, help="timed runs per candidate per round")
    ap.add_argument("--keep-float", nargs="*", default=None,
                    help="nodes kept in float (default: those the last build's search kept, from its search.json)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("pipeline", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for model in MODELS if args.model == "all" else [args.model]:
        bench(model, args.rounds, args.runs, args.keep_float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
