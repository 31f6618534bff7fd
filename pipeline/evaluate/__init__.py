"""Evaluation of a build: latency, size, fidelity, accuracy, environment, gates, verdict.

Import the module you need (``pipeline.evaluate.metrics.evaluate_build``, ``...gates``,
``...task_metrics``): this package imports nothing, so the export stage, which only checks task
fidelity, does not depend on (and is not rebuilt by edits to) the rest of evaluation.
Nothing here imports torch or TensorFlow.
"""
