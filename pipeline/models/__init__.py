"""Model factories referenced by recipes (``_target_: pipeline.models.<module>.<function>``).

``digits_cnn`` and ``text`` import torch at module level and ``digits_keras`` builds Keras models: only
the stages of their framework import them. ``packaged`` (model files that installed packages ship)
imports no framework."""
