"""Training for framework sources (``torch_train``: deterministic CPU training / fine-tuning).

Importing this package imports no framework; the submodules do."""
