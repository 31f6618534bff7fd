"""Model factories referenced by recipes (``_target_: pipeline.models.<module>.<function>``).

These modules import torch at module level: only torch sources (and tests) import them."""
