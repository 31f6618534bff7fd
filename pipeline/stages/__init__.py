"""DVC stage entry points. Each reads params.yaml, validates its own section, calls a pure function
(the same one tests and sweeps call) and writes its outputs atomically. Paths come from the command
line (as written in dvc.yaml); tuning values come from params.yaml."""
