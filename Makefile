# Two commands do everything on a fresh clone:
#   make serve   set up .venv (core + every plugin in plugins/, editable) and start dback
#   make test    set up .venv with the test tools and run the whole test suite
#   make bench   dback side by side with d-back 0.0.18 (see docs/performance.md; BENCH_ARGS=--quick)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
# d-back's import path and command line: a distribution of its own (see compat/README.md)
COMPAT_DIR := compat
STAMP := $(VENV)/.installed

.PHONY: setup serve test lint typecheck bench clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS) $(COMPAT_DIR))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' $(addprefix -e ./,$(PLUGIN_DIRS) $(COMPAT_DIR))
	touch $(STAMP)

setup: $(STAMP)

serve: setup
	$(BIN)/dback serve

lint: setup typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV)
