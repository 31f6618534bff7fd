"""Transformer fusion and int8 on the all-MiniLM-L6-v2 embedder: what beats the expert's hand pipeline?

    .venv/bin/python benchmarks/bench_transformer.py [--rounds 3] [--runs 60] [--sensitivity 4]

Builds candidates from the model's fp32 export (``artifacts/models/minilm/export``; build it with
``dvc repro export@minilm``) with the project's own passes and quantizers, then measures all of them
against the export in ONE interleaved run per round (2 threads, batch 1, seq 128, the ``cpu`` target
at graph optimization level ``all`` unless a candidate says otherwise), ``--rounds`` times: the
spread over rounds is the noise. Fidelity is the mean-pooled (attention-mask) embedding cosine
against PyTorch's outputs on every reference sentence (min and mean), the same metric the
``embedding_cosine_min`` gate reads.

Candidates: the unfused export with the default passes; ``passes: transformer`` (fused) in fp32;
fused + dynamic int8 per-channel with every op type ONNX Runtime quantizes (Attention -> QAttention,
EmbedLayerNormalization -> QEmbedLayerNormalization: the expert's pipeline) and with MatMul only;
per-tensor; reduce_range; fusion at opt_level 1; the session at ``extended`` / ``basic``; unfused
dynamic int8; and the fused int8 with the ``--sensitivity`` most sensitive nodes kept in float
(ranked by the pooled cosine lost when only that node is quantized).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline.evaluate.latency import benchmark_lock, measure_interleaved, stats_ms  # noqa: E402

MODEL = "minilm"
THREADS = 2
RANKING_SAMPLES = 64  # sentences that rank the nodes by sensitivity
LOG = logging.getLogger("bench_transformer")


def _spec():
    import yaml

    from pipeline.schema import validate_model

    return validate_model(yaml.safe_load((ROOT / "conf/model/minilm.yaml").read_text()), "models.minilm")


def _passes(src: Path, dst: Path, option: str, dims: dict[str, int] | None = None, **transformer_params) -> Path:
    import yaml

    from pipeline.passes import PassContext, run_pass_list
    from pipeline.schema import validate_pass

    entries = []
    for i, raw in enumerate(yaml.safe_load((ROOT / f"conf/passes/{option}.yaml").read_text())):
        if raw["name"] == "transformer_optimize":
            raw = {"name": raw["name"], "params": {**raw["params"], **transformer_params}}
        spec, params = validate_pass(raw, f"passes[{i}]")
        entries.append((spec.name, params))
    out = dst / "model.onnx"
    run_pass_list(src, out, entries, PassContext(log=LOG, work_dir=dst, dims=dims or {"batch": 1, "seq": 128}))
    return out


def _dynamic(src: Path, dst: Path, spec, **params) -> Path:
    from pipeline.quantization.base import QuantContext
    from pipeline.quantization.dynamic import DynamicInt8

    dst.mkdir(parents=True, exist_ok=True)
    work = dst / "work"
    work.mkdir(exist_ok=True)
    out = dst / "model.onnx"
    DynamicInt8().run(src, out, DynamicInt8.Params(**params), QuantContext(model_spec=spec, log=LOG, work_dir=work))
    return out


def _session(path: Path, level: str = "all"):
    from pipeline.targets import get_target

    target = get_target("cpu")
    return target.session(path, target.Params(name="cpu", threads=THREADS, graph_optimization_level=level))


def _fidelity(session, inputs: dict, reference: dict, spec) -> dict[str, float]:
    from pipeline.evaluate.task_metrics import embedding

    names = [i.name for i in session.get_inputs()]
    out = np.concatenate(
        [session.run(None, {n: inputs[n][i : i + 16] for n in names})[0] for i in range(0, len(inputs[names[0]]), 16)]
    )
    return embedding(reference, {spec.fidelity.output: out}, inputs, spec.fidelity, False)


def _quantizable_nodes(path: Path) -> list[str]:
    import onnx
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in IntegerOpsRegistry and n.name]


def sensitivity(fused: Path, tmp: Path, spec, inputs, reference, top: int) -> list[tuple[str, float]]:
    """Nodes ranked by the pooled cosine_min lost when only that node is quantized (the rest float)."""
    nodes = _quantizable_nodes(fused)
    losses = []
    for i, node in enumerate(nodes):
        others = [n for n in nodes if n != node]
        path = _dynamic(fused, tmp / f"sens{i}", spec, nodes_to_exclude=others)
        fid = _fidelity(_session(path), inputs, reference, spec)
        losses.append((node, 1.0 - fid["embedding_cosine_min"]))
        LOG.info("sensitivity %-40s 1 - cosine_min %.5f", node, losses[-1][1])
    return sorted(losses, key=lambda t: -t[1])[:top]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, default=ROOT / "artifacts/models" / MODEL / "export")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=60, help="timed runs per candidate per round")
    ap.add_argument("--sensitivity", type=int, default=4, help="most sensitive nodes to try in float (0: skip)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("pipeline", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    export = args.export / "model.onnx"
    if not export.is_file():
        print(f"error: {export} not found: build it first (dvc repro export@{MODEL})", file=sys.stderr)
        return 2
    spec = _spec()
    ref = np.load(args.export / "reference.npz")
    inputs = {k[len("input/"):]: ref[k] for k in ref.files if k.startswith("input/")}
    reference = {k[len("output/"):]: ref[k] for k in ref.files if k.startswith("output/")}
    feeds = {k: v[:1] for k, v in inputs.items()}

    with tempfile.TemporaryDirectory(prefix="bench-transformer-") as tmp_name:
        tmp = Path(tmp_name)
        unfused = _passes(export, tmp / "unfused", "default")
        fused = _passes(export, tmp / "fused", "transformer")
        fused1 = _passes(export, tmp / "fused1", "transformer", opt_level=1)
        cands: dict[str, tuple[Path, str]] = {
            "fp32 export": (export, "all"),
            "fp32 default passes": (unfused, "all"),
            "fp32 fused": (fused, "all"),
            "int8 unfused dyn per-channel": (_dynamic(unfused, tmp / "q_unfused", spec), "all"),
            "int8 fused dyn per-channel (expert)": (_dynamic(fused, tmp / "q_expert", spec), "all"),
            "int8 fused dyn per-channel MatMul only": (
                _dynamic(fused, tmp / "q_matmul", spec, op_types_to_quantize=["MatMul"]), "all"),
            "int8 fused dyn per-tensor": (_dynamic(fused, tmp / "q_tensor", spec, per_channel=False), "all"),
            "int8 fused dyn per-channel reduce_range": (
                _dynamic(fused, tmp / "q_rr", spec, reduce_range=True), "all"),
            "int8 fused(opt_level 1) dyn per-channel": (_dynamic(fused1, tmp / "q_ol1", spec), "all"),
        }
        expert = cands["int8 fused dyn per-channel (expert)"][0]
        cands["int8 expert, session extended"] = (expert, "extended")
        cands["int8 expert, session basic"] = (expert, "basic")
        if args.sensitivity:
            head = {k: v[:RANKING_SAMPLES] for k, v in inputs.items()}
            head_ref = {k: v[:RANKING_SAMPLES] for k, v in reference.items()}
            ranked = sensitivity(fused, tmp, spec, head, head_ref, args.sensitivity)
            print("most sensitive nodes (1 - pooled cosine_min when only that node is int8):")
            for node, loss in ranked:
                print(f"  {node}: {loss:.5f}")
            for k in sorted({1, 2, args.sensitivity}):
                keep = [n for n, _ in ranked[:k]]
                cands[f"int8 expert, {k} most sensitive in float"] = (
                    _dynamic(fused, tmp / f"q_keep{k}", spec, nodes_to_exclude=keep), "all")

        sessions = {name: (_session(path, level), feeds) for name, (path, level) in cands.items()}
        fidelity = {name: _fidelity(sess, inputs, reference, spec) for name, (sess, _) in sessions.items()}
        speedups: dict[str, list[float]] = {name: [] for name in cands}
        p50s: dict[str, list[float]] = {name: [] for name in cands}
        for r in range(args.rounds):
            with benchmark_lock(log=LOG):
                times = measure_interleaved(sessions, warmup=5, runs=args.runs, blocks=6)
            base = stats_ms(times["fp32 export"])["p50"]
            for name in cands:
                p50 = stats_ms(times[name])["p50"]
                p50s[name].append(p50)
                speedups[name].append(base / p50)
            LOG.info("round %d of %d done (fp32 export p50 %.2f ms)", r + 1, args.rounds, base)

    from tabulate import tabulate

    rows = []
    for name in cands:
        s = speedups[name]
        rows.append([
            name, cands[name][1], f"{statistics.median(p50s[name]):.2f}",
            f"{statistics.median(s):.2f}x", f"{min(s):.2f}-{max(s):.2f}x",
            f"{fidelity[name]['embedding_cosine_min']:.4f}", f"{fidelity[name]['embedding_cosine_mean']:.4f}",
        ])
    print(f"\n{MODEL}: {THREADS} threads, batch 1, seq 128, {args.rounds} interleaved rounds x {args.runs} runs; "
          f"fidelity on {len(inputs[next(iter(inputs))])} sentences")
    print(tabulate(rows, headers=["candidate", "session level", "p50 ms (median)", "speedup (median)",
                                  "speedup range", "pooled cos min", "pooled cos mean"],
                   tablefmt="github", disable_numparse=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
