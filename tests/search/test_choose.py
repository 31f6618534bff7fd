"""The choice from recorded measurements: noise-aware, fp32 when int8 is slower, fails_gates when all fail."""

from __future__ import annotations

import pytest

from pipeline.search.choose import FP32, beats_beyond_noise, choose, pair_interval


def _cand(name, speedup, blocks, changes=2, cos=0.999, passed=True, failures=()):
    lo, hi = min(blocks), max(blocks)  # stands in for the 10-90 interval vs the export
    return {
        "name": name,
        "changes": changes,
        "final": {
            "speedup": speedup,
            "interval": [lo, hi],
            "block_medians_ms": [1.0 / b for b in blocks],  # export block median is 1 ms
            "gates_passed": passed,
            "failures": list(failures),
            "fidelity": {"cosine_min": cos},
        },
    }


FP32_REC = _cand(FP32, 1.0, [1.0, 1.0, 1.0, 1.0], changes=0, cos=1.0)


def test_pair_interval_from_block_medians():
    fast = _cand("a", 2.0, [2.0, 2.0, 2.0, 2.0])
    slow = _cand("b", 1.0, [1.0, 1.0, 1.0, 1.0])
    assert pair_interval(fast, slow) == pytest.approx((2.0, 2.0))
    assert beats_beyond_noise(fast, slow) and not beats_beyond_noise(slow, fast)


def test_int8_slower_ships_fp32():
    slow_int8 = _cand("static-pc-minmax", 0.83, [0.80, 0.82, 0.84, 0.86])
    choice = choose([FP32_REC, slow_int8])
    assert choice["chosen"] == FP32
    assert choice["verdict"] == "not_faster"
    assert "shipped the fp32-optimized model" in choice["reason"]
    assert "static-pc-minmax 0.83x" in choice["reason"]


def test_within_noise_of_fp32_ships_fp32():
    # 1.03x at p50 but two of four blocks slower than fp32: not faster beyond noise
    noisy = _cand("dynamic-pc", 1.03, [0.97, 0.99, 1.06, 1.10])
    assert choose([FP32_REC, noisy])["chosen"] == FP32


def test_fastest_beyond_noise_wins_and_ties_prefer_fewer_changes_then_fidelity():
    fast = _cand("static-pc-minmax", 1.9, [1.85, 1.9, 1.92, 1.95], cos=0.995)
    tied = _cand("static-pc-entropy", 1.88, [1.88, 1.86, 1.95, 1.9], cos=0.999)  # blocks cross
    fused = _cand("fp32@transformer", 1.2, [1.18, 1.2, 1.21, 1.22], changes=1)
    choice = choose([FP32_REC, fused, fast, tied])
    # the two static builds are within noise of each other: the more faithful one ships
    assert choice["chosen"] == "static-pc-entropy" and choice["verdict"] == "faster"
    assert "within noise of the fastest" in choice["reason"]
    assert choice["tied"] == ["static-pc-minmax"]
    # a fused float graph within noise of a quantized one wins (fewer changes)
    fused_fast = _cand("fp32@transformer", 1.89, [1.88, 1.86, 1.95, 1.9], changes=1)
    assert choose([FP32_REC, fused_fast, fast])["chosen"] == "fp32@transformer"


def test_failing_candidates_never_ship():
    fast_bad = _cand("static-pc-minmax", 2.5, [2.4, 2.5, 2.5, 2.6], cos=0.8, passed=False,
                     failures=["fidelity.cosine_min 0.8 < min_cosine 0.99"])
    ok = _cand("dynamic-pc", 1.5, [1.45, 1.5, 1.5, 1.55])
    assert choose([FP32_REC, fast_bad, ok])["chosen"] == "dynamic-pc"


def test_every_candidate_fails_the_gates():
    fp32 = {**FP32_REC, "final": {**FP32_REC["final"], "gates_passed": False, "failures": ["speedup 1 < min_speedup 2"]}}
    a = _cand("static-pc-minmax", 1.6, [1.5, 1.6, 1.6, 1.7], cos=0.95, passed=False,
              failures=["speedup 1.6 < min_speedup 2", "fidelity.cosine_min 0.95 < min_cosine 0.99"])
    b = _cand("dynamic-pc", 1.4, [1.35, 1.4, 1.4, 1.45], cos=0.995, passed=False,
              failures=["speedup 1.4 < min_speedup 2"])
    choice = choose([fp32, a, b])
    assert choice["chosen"] == FP32 and choice["verdict"] == "fails_gates"
    # the best candidate: fewest missed gates
    assert "best candidate dynamic-pc 1.40x (noise 1.35-1.45x, cosine_min 0.99500)" in choice["reason"]
    assert "speedup 1.4 < min_speedup 2" in choice["reason"]
    assert "not int8" in choice["reason"]


def test_same_measurements_same_choice():
    cands = [FP32_REC, _cand("a", 1.5, [1.4, 1.5, 1.6, 1.5]), _cand("b", 1.52, [1.45, 1.5, 1.55, 1.6])]
    assert choose(cands) == choose(list(reversed(cands))) == choose(cands)


def test_candidates_are_judged_by_the_task_figure_not_flattened_cosine():
    from pipeline.search.choose import describe, faithfulness

    def cand(name, iou, cosine):
        return {"name": name, "final": {"speedup": 1.2, "interval": [1.1, 1.3],
                                        "fidelity": {"task": "detection", "iou_min": iou, "cosine_min": cosine}}}

    worse_map, better_map = cand("a", 0.951, 0.999), cand("b", 0.99, 0.95)
    assert faithfulness(better_map) > faithfulness(worse_map)
    assert describe(better_map) == "b 1.20x (noise 1.10-1.30x, iou_min 0.99000)"
    errors = {"name": "r", "final": {"fidelity": {"task": "regression", "rel_err_max": 0.2}}}
    assert faithfulness(errors) == -0.2  # errors: lower is more faithful
