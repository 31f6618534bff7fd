"""Evaluation of a build: latency, size, fidelity, accuracy, environment, gates.

``evaluate_build`` measures one build; ``check_gates`` lists the gates a metrics dict misses.
Neither imports torch or TensorFlow.
"""

from __future__ import annotations

from pipeline.evaluate.gates import GATES, check_gates, evaluate_gates
from pipeline.evaluate.latency import benchmark_lock
from pipeline.evaluate.metrics import evaluate_build

__all__ = ["GATES", "benchmark_lock", "check_gates", "evaluate_build", "evaluate_gates"]
