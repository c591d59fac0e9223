# Two commands do everything on a fresh clone:
#   make serve   set up .venv (core + every plugin in plugins/, editable) and start dback
#   make test    add the test tools, install and start what the tests need outside Python
#                (scripts/test-machine: chromium, nginx, PostgreSQL, Redis...), lint, run all
#   make test-fast  while working: the tests that need no service and are quick (under a minute)
#   make bench   dback side by side with d-back 0.0.18 (see docs/performance.md; BENCH_ARGS=--quick)
#   make soak    the long chaos soak (docs/soak.md; SOAK_ARGS="--duration 1800 --sentinels")
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
# d-back's import path and command line: a distribution of its own (see compat/README.md)
COMPAT_DIR := compat
PROJECTS := pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS) $(COMPAT_DIR))
# What `make serve` needs - the core and every plugin - and, for `make setup` and everything
# that tests, the test tools on top.
SERVE_STAMP := $(VENV)/.installed-serve
STAMP := $(VENV)/.installed

.PHONY: setup setup-serve test-machine serve test test-fast lint typecheck bench soak clean

$(SERVE_STAMP): $(PROJECTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e . $(addprefix -e ./,$(PLUGIN_DIRS) $(COMPAT_DIR))
	touch $(SERVE_STAMP)

$(STAMP): $(SERVE_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup-serve: $(SERVE_STAMP)

setup: $(STAMP)

# System packages and services the tests use: installed and started when missing or down.
test-machine:
	scripts/test-machine

serve: setup-serve
	$(BIN)/dback serve

lint: setup typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# mypy --strict (pyproject.toml) over the core, compat and the plugins, then over a package
# as `dback new-plugin` writes it, its tests included, against this checkout's dback_core.
TEMPLATE_CHECK := $(VENV)/template-check
typecheck: setup
	$(BIN)/mypy
	rm -rf $(TEMPLATE_CHECK)
	$(BIN)/dback new-plugin dback-typed --dir $(TEMPLATE_CHECK) > /dev/null
	cd $(TEMPLATE_CHECK)/dback-typed && MYPYPATH=$(CURDIR) $(CURDIR)/$(BIN)/mypy --strict \
		--cache-dir $(CURDIR)/.mypy_cache dback_typed tests

test: setup test-machine lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# While working: every test that needs no PostgreSQL, Redis, browser, nginx/systemd or package
# index and is not slow (the markers in pyproject.toml); under a minute. `make test` runs all.
FAST := not postgres and not redis and not browser and not system and not network and not slow
test-fast: setup
	$(BIN)/python -m pytest -q -m "$(FAST)" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Several dback processes on PostgreSQL and a Redis of their own, a few hundred viewers, a
# writer and faults at random for 10 minutes (default); prints one table, exit 1 if any viewer
# saw a wrong world or lost, duplicated or reordered chat. A one-minute form runs in `make test`.
soak: setup test-machine
	$(BIN)/python -m tests.support.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV)
