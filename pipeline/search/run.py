"""The search behind ``quantization: auto``, from the passes' output to the shipped model and ``search.json``.

1. Graph variants: the passes' output, plus ``transformer_optimize`` on it when the graph looks like a
   transformer and that pass is registered.
2. Candidates (:mod:`pipeline.search.space`): every variant unquantized (``fp32`` is the passes' output:
   the fp32-optimized model) and the product of the space's quantization dimensions.
3. Screen: fidelity on a few reference samples, and one short interleaved latency run of all of them
   with the fp32 export; the build's own gates on each.
4. Mixed precision for the candidates that fail the quality gates, closest to passing first
   (:mod:`pipeline.search.mixed`).
5. Final: the best screened candidates passing the quality gates, plus ``fp32``, measured against the
   fp32 export in ONE interleaved run (fidelity on the build's ``evaluate.fidelity_samples``).
6. Choice (:func:`pipeline.search.choose.choose`), a pure function of the recorded numbers.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.errors import StageError, one_line
from pipeline.search.space import FLOAT, Candidate, plan

TRANSFORMER_PASS = "transformer_optimize"
RANKING_SHOWN = 20  # sensitivity entries kept per ranking in search.json


def looks_like_transformer(path: Path) -> bool:
    """Attention-shaped float graph not fused yet: Softmax, at least 4 MatMul, a layer norm (fused or as
    ReduceMean + Sqrt/Pow), and no com.microsoft Attention."""
    from pipeline.onnx_utils import file_stats

    ops = file_stats(path)["ops"]
    if any(op.endswith("Attention") for op in ops):
        return False
    layer_norm = "LayerNormalization" in ops or ("ReduceMean" in ops and ("Sqrt" in ops or "Pow" in ops))
    return ops.get("Softmax", 0) >= 1 and ops.get("MatMul", 0) >= 4 and layer_norm


def name_nodes(path: Path) -> int:
    """Give unnamed nodes of the main graph a unique name (``<op>_<index>``), so a node can be kept
    in float by name; returns how many were named."""
    import onnx

    from pipeline.passes.base import save_like

    model = onnx.load(str(path))
    taken = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            named += 1
    if named:
        save_like(model, path, path)
    return named


class Search:
    def __init__(self, src: Path, params: Any, ctx: Any) -> None:
        from pipeline.search.screen import Bench

        if ctx.build is None or ctx.export_dir is None:
            raise StageError(
                "quantize", "auto",
                "quantization 'auto' measures candidates against the fp32 export: run the quantize stage "
                "with --export artifacts/models/<model>/export",
            )
        self.src = src
        self.params = params
        self.ctx = ctx
        self.log: logging.Logger = ctx.log
        self.work = Path(ctx.work_dir)
        self.build = ctx.build
        self.bench = Bench(ctx.build, ctx.model_spec, ctx.export_dir, ctx.log)
        self.task = ctx.model_spec.task if ctx.model_spec is not None else "classification"
        self.graphs: dict[str, Path] = {"passes": src}
        self.graph_info: dict[str, Any] = {"passes": {"source": "the passes' output"}}
        self.prepared: dict[str, Path] = {}
        self.smoothed: dict[tuple[Any, ...], tuple[Path, dict[str, Any]]] = {}  # per graph, alpha, op types
        self.prep_info: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.cands: dict[str, Candidate] = {}
        self.mixed: list[dict[str, Any]] = []
        self.ranges: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}  # static calibration per graph/settings

    # -- graph variants -----------------------------------------------------------------------

    def graph_variants(self) -> None:
        from pipeline.passes import PASSES, PassContext, run_pass_list

        if "transformer" not in self.params.space.graphs:
            return
        if TRANSFORMER_PASS not in PASSES:
            self.graph_info["transformer"] = {"skipped": f"no '{TRANSFORMER_PASS}' pass is registered"}
            return
        if not looks_like_transformer(self.src):
            self.graph_info["transformer"] = {"skipped": "the graph does not look like an unfused transformer"}
            return
        out = self.work / "graphs" / "transformer" / "model.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        pass_params = PASSES[TRANSFORMER_PASS].Params(options=dict(self.params.space.transformer_options))
        try:
            result = run_pass_list(
                self.src, out, [(TRANSFORMER_PASS, pass_params)],
                PassContext(log=self.log, work_dir=out.parent, dims=self.ctx.dims),
            )
        except Exception as exc:
            self.log.info("graph variant 'transformer' failed: %s", one_line(exc))
            self.graph_info["transformer"] = {"failed": one_line(exc)}
            return
        self.graphs["transformer"] = out
        self.graph_info["transformer"] = {"pass": TRANSFORMER_PASS, "info": result["passes"][0]}

    def prepare(self, graph: str) -> Path:
        from pipeline.quantization.preprocess import prepare
        from pipeline.quantization.static import QDQ_PER_CHANNEL_MIN_OPSET

        if graph not in self.prepared:
            path, info = prepare(
                self.graphs[graph], self.work / "prepared" / graph,
                min_opset=QDQ_PER_CHANNEL_MIN_OPSET, run_preprocess=self.params.preprocess, log=self.log,
            )
            info["named_nodes"] = name_nodes(path)
            self.prepared[graph], self.prep_info[graph] = path, info
        return self.prepared[graph]

    def source(self, cand: Candidate) -> tuple[Path, dict[str, Any] | None]:
        """The float graph ``cand`` quantizes: the prepared graph, smoothed once per graph, strength
        and op types when ``cand`` asks for smoothing; and the smoothing info."""
        from pipeline.quantization.smooth import Smoothing, apply
        from pipeline.search.space import quantizable_ops

        src = self.prepare(cand.graph)
        if cand.smoothing is None:
            return src, None
        key = (cand.graph, cand.smoothing, cand.mode, cand.op_types)
        if key not in self.smoothed:
            cal = self.params.calibration
            spec = Smoothing(alpha=cand.smoothing, num_samples=cal.num_samples, dataset=cal.dataset, seed=cal.seed)
            ops = set(cand.op_types) if cand.op_types else quantizable_ops(cand.mode)
            self.smoothed[key] = apply(src, spec, self.sub_ctx(f"smoothing-{len(self.smoothed)}"), ops)
        return self.smoothed[key]

    # -- candidates ---------------------------------------------------------------------------

    def quantizer_params(self, cand: Candidate) -> tuple[Any, Any]:
        from pipeline.quantization.dynamic import DynamicInt8
        from pipeline.quantization.static import Calibration, StaticInt8

        ops = list(cand.op_types) if cand.op_types else None
        if cand.mode == "static":
            cal = self.params.calibration
            calibration = Calibration(
                method=cand.method or "minmax", num_samples=cal.num_samples, percentile=cal.percentile,
                dataset=cal.dataset, seed=cal.seed,
            )
            return StaticInt8(), StaticInt8.Params(
                per_channel=cand.per_channel, calibration=calibration, op_types_to_quantize=ops,
                nodes_to_exclude=list(cand.excluded), preprocess=False,
            )
        return DynamicInt8(), DynamicInt8.Params(
            per_channel=cand.per_channel, op_types_to_quantize=ops, nodes_to_exclude=list(cand.excluded), preprocess=False,
        )

    def sub_ctx(self, tag: str) -> Any:
        from pipeline.quantization.base import QuantContext

        work = self.work / "quant" / tag
        work.mkdir(parents=True, exist_ok=True)
        return QuantContext(
            model_spec=self.ctx.model_spec, log=self.log, work_dir=work, key=self.ctx.key,
            model_key=self.ctx.model_key, source=self.ctx.source,
        )

    def materialize(self, cand: Candidate) -> dict[str, Any]:
        """Write the candidate's model; its record (status ok / failed)."""
        from pipeline.onnx_utils import model_size_mb

        record: dict[str, Any] = {"name": cand.name, "settings": cand.settings(), "changes": cand.changes}
        if cand.excluded:
            record["excluded_nodes"] = list(cand.excluded)
        self.records[cand.name], self.cands[cand.name] = record, cand
        if cand.mode == FLOAT:
            self.paths[cand.name] = self.graphs[cand.graph]
            record.update(status="ok", size_mb=model_size_mb(self.graphs[cand.graph]))
            return record
        dst = self.work / "candidates" / cand.name / "model.onnx"
        dst.parent.mkdir(parents=True, exist_ok=True)
        impl, qparams = self.quantizer_params(cand)
        try:
            src, smoothing = self.source(cand)
            if cand.mode == "static":  # one calibration per graph and settings, reused by every exclusion step
                key = (cand.graph, cand.method, cand.op_types, cand.smoothing)
                if key not in self.ranges:
                    self.ranges[key] = impl.calibrate(src, qparams, self.sub_ctx(f"calibration-{cand.name}"))
                ranges, cal_info = self.ranges[key]
                info = {**impl.run(src, dst, qparams, self.sub_ctx(cand.name), ranges=ranges), **cal_info}
            else:
                info = impl.run(src, dst, qparams, self.sub_ctx(cand.name))
            info["smoothing"] = smoothing
        except Exception as exc:
            self.log.info("candidate %s failed: %s", cand.name, one_line(exc))
            self.log.debug("candidate %s failed", cand.name, exc_info=True)
            record.update(status="failed", error=one_line(exc))
            return record
        from pipeline.evaluate.verdict import QUANT_OPS
        from pipeline.onnx_utils import file_stats

        if not {op.split(".")[-1] for op in file_stats(dst)["ops"]} & QUANT_OPS:
            # nothing was quantized: the same float graph as an fp32 candidate, not a candidate of its own
            self.log.info("candidate %s quantized nothing: left out", cand.name)
            record.update(status="unchanged", error=f"{impl.name} quantized no node of this graph")
            return record
        self.paths[cand.name] = dst
        record.update(status="ok", size_mb=model_size_mb(dst), quantizer=impl.name, info=info)
        return record

    # -- measuring ----------------------------------------------------------------------------

    def measure(self, names: list[str], stage: str, samples: int, warmup: int, runs: int, blocks: int) -> None:
        from pipeline.search.screen import candidate_metrics, gate_result, headline_fidelity

        quality = {}
        for name in names:
            try:
                quality[name] = self.bench.quality(self.paths[name], samples)
            except Exception as exc:
                self.log.info("candidate %s does not run: %s", name, one_line(exc))
                self.records[name].update(status="failed", error=one_line(exc))
        names = [n for n in names if n in quality]
        if not names:
            return
        speed = self.bench.speed({n: self.paths[n] for n in names}, warmup, runs, blocks)
        for name in names:
            metrics = candidate_metrics(self.task, quality[name], speed[name], self.records[name]["size_mb"])
            self.records[name][stage] = {
                **{k: speed[name][k] for k in ("speedup", "interval", "p50_ms", "p90_ms", "p99_ms", "block_medians_ms")},
                "reference_p50_ms": speed["reference"]["p50_ms"],
                "reference_block_medians_ms": speed["reference"]["block_medians_ms"],
                "fidelity_samples": min(samples, self.bench.ref.num_samples),
                "fidelity": headline_fidelity(quality[name]),
                **gate_result(metrics, self.build.evaluate.gates),
            }
            s = self.records[name][stage]
            self.log.info(
                "%s %s: %.2fx (noise %.2f-%.2fx), quality gates %s%s", stage, name, s["speedup"], *s["interval"],
                "pass" if s["quality_passed"] else "fail", "" if s["gates_passed"] else f" ({'; '.join(s['failures'])})",
            )

    # -- mixed precision ----------------------------------------------------------------------

    def ranking(self, cand: Candidate) -> list[Any]:
        """Nodes of ``cand``'s graph ranked by the error each adds (static QDQ of the same settings;
        for a dynamic candidate, a MinMax-calibrated QDQ model of the same op types stands in)."""
        from pipeline.quantization.calibration import batches, calibration_samples
        from pipeline.search.sensitivity import rank_nodes

        from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

        src, _ = self.source(cand)
        if cand.mode == "static":
            qdq = self.paths[cand.name]
            ops = set(cand.op_types or set(QLinearOpsRegistry) | set(QDQRegistry))
        else:
            ops = set(cand.op_types or set(IntegerOpsRegistry)) & set(QDQRegistry)
            stand_in = replace(cand, mode="static", method="minmax", op_types=tuple(sorted(ops)))
            impl, qparams = self.quantizer_params(stand_in)
            qdq = self.work / "ranking" / cand.name / "model.onnx"
            qdq.parent.mkdir(parents=True, exist_ok=True)
            impl.run(src, qdq, qparams, self.sub_ctx(f"ranking-{cand.name}"))
        cal = self.params.calibration
        ctx = self.sub_ctx(f"ranking-data-{cand.name}")
        arrays, _ = calibration_samples(src, cal.dataset, self.params.mixed_precision.ranking_samples, cal.seed, ctx)
        feeds = batches(src, arrays, max_batch=1, model_spec=self.ctx.model_spec)
        return rank_nodes(src, qdq, feeds, self.work / "ranking" / f"{cand.name}-probe", ops)

    def mixed_precision(self, cand: Candidate) -> None:
        from pipeline.search.mixed import search_exclusions

        spec = self.params.mixed_precision
        scr = self.params.screen
        try:
            ranked = self.ranking(cand)
        except Exception as exc:
            self.log.info("sensitivity ranking of %s failed: %s", cand.name, one_line(exc))
            self.mixed.append({"parent": cand.name, "error": one_line(exc), "steps": []})
            return
        self.log.info(
            "mixed precision from %s: most sensitive %s", cand.name,
            ", ".join(f"{e.node} ({e.sqnr_db:.1f} dB)" for e in ranked[:5]),
        )

        def step(nodes: list[str], i: int) -> dict[str, Any]:
            child = cand.excluding(nodes, i)
            record = self.materialize(child)
            if record["status"] == "ok":
                self.measure([child.name], "screen", scr.fidelity_samples, scr.warmup, scr.runs, scr.blocks)
            screen = record.get("screen") or {}
            return {
                "candidate": child.name,
                "excluded_nodes": nodes,
                "status": record["status"],
                "speedup": screen.get("speedup"),
                "interval": screen.get("interval"),
                "fidelity": screen.get("fidelity"),
                "quality_failures": screen.get("quality_failures"),
                "quality_passed": bool(screen.get("quality_passed")),
            }

        result = search_exclusions([e.node for e in ranked], step, spec.max_steps)
        passing = result["passing"]["candidate"] if result["passing"] else None
        # only the passing step stays a candidate: the others are worse versions of it
        for s in result["steps"]:
            if s["candidate"] != passing:
                self.records.pop(s["candidate"], None)
        self.mixed.append(
            {
                "parent": cand.name,
                "ranking": [e.as_dict() for e in ranked[:RANKING_SHOWN]],
                "ranked_nodes": len(ranked),
                "steps": result["steps"],
                "passing": passing,
            }
        )

    # -- the whole search ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from pipeline.search.choose import FP32, choose, faithfulness

        p = self.params
        self.graph_variants()
        from pipeline.quantization.base import graph_summary

        the_plan = plan(p.space, list(self.graphs), {g: graph_summary(path)[1] for g, path in self.graphs.items()})
        for cand in the_plan.candidates:
            self.materialize(cand)
        ok = [n for n, r in self.records.items() if r["status"] == "ok"]
        self.log.info("screening %d candidate(s): %s", len(ok), ", ".join(ok))
        self.measure(ok, "screen", p.screen.fidelity_samples, p.screen.warmup, p.screen.runs, p.screen.blocks)
        if FP32 not in self.records or self.records[FP32].get("status") != "ok":
            raise StageError("quantize", "auto", f"the fp32-optimized model does not run: {self.records[FP32].get('error')}")

        screened = [r for r in self.records.values() if r.get("screen")]
        if p.mixed_precision.enabled:
            failing = [r for r in screened if self.cands[r["name"]].quantized and not r["screen"]["quality_passed"]]
            # closest to the gates first (fewest missed quality gates, most faithful for the task), then fastest
            failing.sort(key=lambda r: (
                len(r["screen"]["quality_failures"]), -faithfulness(r, "screen"), -r["screen"]["speedup"], r["name"],
            ))
            for r in failing[: p.mixed_precision.candidates]:
                self.mixed_precision(self.cands[r["name"]])

        screened = [r for r in self.records.values() if r.get("screen") and r["name"] != FP32]
        good = sorted(
            (r for r in screened if r["screen"]["quality_passed"]), key=lambda r: (-r["screen"]["speedup"], r["name"])
        )
        finalists = [r["name"] for r in good[: p.final.finalists]]
        if not finalists and screened:  # nothing passes: measure the best failing one for the reason
            best = min(
                screened,
                key=lambda r: (len(r["screen"]["quality_failures"]), -r["screen"]["speedup"], r["name"]),
            )
            finalists = [best["name"]]
        finalists = [FP32, *finalists]
        self.log.info("final run: %s", ", ".join(finalists))
        samples = self.build.evaluate.fidelity_samples
        self.measure(finalists, "final", samples, p.final.warmup, p.final.runs, p.final.blocks)
        candidates = list(self.records.values())
        choice = choose(candidates)
        self.log.info("search: %s (%s)", choice["chosen"], choice["reason"])
        return {
            "graphs": self.graph_info,
            "prepared": self.prep_info,
            "candidates": candidates,
            "mixed_precision": self.mixed,
            "finalists": finalists,
            "choice": choice,
        }


def run_search(src: Path, dst: Path, params: Any, ctx: Any) -> dict[str, Any]:
    """Search, copy the chosen model to ``dst``, write ``search.json`` beside it; info for quantization.json."""
    from pipeline.fsutil import write_artifact_json
    from pipeline.passes.base import copy_model
    from pipeline.search.record import SEARCH_FILE

    search = Search(Path(src), params, ctx)
    record = search.run()
    chosen = record["choice"]["chosen"]
    copy_model(search.paths[chosen], Path(dst))
    record["space"] = params.model_dump(mode="json", by_alias=True)
    write_artifact_json(Path(dst).parent / SEARCH_FILE, record)
    cand = search.cands[chosen]
    info = dict(search.records[chosen].get("info") or {})
    info.update(
        {
            "float_chosen": not cand.quantized,
            "chosen": chosen,
            "chosen_settings": cand.settings(),
            "search_verdict": record["choice"]["verdict"],
            "search_reason": record["choice"]["reason"],
            "candidates": len(record["candidates"]),
            "calibration_samples": int(info.get("calibration_samples", 0)),
        }
    )
    return info
