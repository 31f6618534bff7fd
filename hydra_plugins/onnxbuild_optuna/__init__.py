"""onnxbuild's Optuna sweeper for Hydra (``hydra/sweeper=onnxbuild_optuna``); the search itself is
:mod:`pipeline.optuna_search`. Hydra finds plugins in the ``hydra_plugins`` namespace package."""
