# The two commands (see README.md):
#   make build   set up .venv, compose the recipes, build every default build with `dvc repro`, print metrics
#   make test    set up .venv, check your conf/ (onnxbuild check) and run the framework's test suite
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export PYTHONHASHSEED := 0
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv build remeasure test bench clean-venv

venv:
	@scripts/venv.sh

# --keep-going: a build whose stages crash does not stop the others. A missed gate is a verdict
# (fails_gates), not a crash, so DVC locks it and the report stays current. When a stage crashed,
# DVC skips the report: it is then written directly so that it lists the failed build and why.
# `onnxbuild verdicts` ends the job: non-zero, naming them, when any build failed its gates or crashed.
build: venv
	onnxbuild compose
	@status=0; dvc repro --keep-going || status=$$?; \
	if [ $$status -ne 0 ]; then \
	  python -m pipeline.stages.report --params params.yaml --metrics-dir metrics/builds --logs logs --out reports; \
	fi; \
	echo; dvc metrics show; \
	echo; python -m pipeline.report.host --metrics-dir metrics/builds; \
	echo; onnxbuild verdicts || status=1; \
	echo; echo "Report: reports/summary.md (Pareto plot: reports/pareto.png, table: reports/builds.csv)"; \
	exit $$status

# The framework's tests (on their own fixture project, tests/fixtures/project) and `onnxbuild check` on
# your conf/ (every recipe and model composes, every _target_ imports, every path exists, params.yaml
# fresh; every error listed). Both always run; pytest's summary closes the output.
# Latency is measured per machine, and DVC does not rerun an evaluate stage whose artifact and params
# are unchanged: this forces every evaluate@BUILD (after bringing the artifacts up to date) and then the
# report, so every number is measured here. One build only: dvc repro --force -s evaluate@BUILD && dvc repro report
remeasure: venv
	onnxbuild compose
	@status=0; dvc repro --keep-going quantize || status=$$?; \
	dvc repro --force --single-item --keep-going evaluate || status=$$?; \
	dvc repro report || python -m pipeline.stages.report --params params.yaml --metrics-dir metrics/builds --logs logs --out reports; \
	echo; python -m pipeline.report.host --metrics-dir metrics/builds; \
	echo; onnxbuild verdicts || status=1; \
	exit $$status

test: venv
	@status=0; onnxbuild check || status=1; echo; \
	pytest -n 2 -q || status=$$?; \
	exit $$status

bench: venv
	python benchmarks/bench_engine.py
	python benchmarks/bench_dvc.py

clean-venv:
	rm -rf .venv
