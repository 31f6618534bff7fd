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

build: venv
	onnxbuild compose
	dvc repro
	@echo
	dvc metrics show
	@echo
	@echo "Report: reports/summary.md (Pareto plot: reports/pareto.png, table: reports/builds.csv)"

test: venv
	pytest -n 2 -q

bench: venv
	python benchmarks/bench_engine.py
	python benchmarks/bench_dvc.py

clean-venv:
	rm -rf .venv
