# The two commands (see README.md):
#   make build   set up .venv, compose the recipes, build every default build with `dvc repro`, print metrics
#   make test    set up .venv and run the test suite
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export PYTHONHASHSEED := 0
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv build test bench clean-venv

venv:
	@scripts/venv.sh

# --keep-going: a build that fails (e.g. misses a gate) does not stop the others; `make` still fails.
build: venv
	onnxbuild compose
	@status=0; dvc repro --keep-going || status=$$?; \
	echo; dvc metrics show; \
	echo; echo "Report: reports/summary.md (Pareto plot: reports/pareto.png, table: reports/builds.csv)"; \
	exit $$status

test: venv
	pytest -n 2 -q

bench: venv
	python benchmarks/bench_engine.py
	python benchmarks/bench_dvc.py

clean-venv:
	rm -rf .venv
