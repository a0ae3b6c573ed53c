# One entry point for every task. `make demo` and `make test` work on a fresh machine:
# they create and refresh the virtual environments themselves.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Other makefiles (mk/*.mk) add the set-up their parts need to these lists.
TEST_DEPS :=
SERVE_DEPS :=
PYTEST_ARGS ?=

.PHONY: help venv test check lint format typecheck protos protos-check unit integration serve playground demo bench clean

help:
	@echo "make demo     run the main job on embedded defaults (sets everything up)"
	@echo "make test     every check: format, lint, types, stale stubs, unit and integration tests"
	@echo "make serve    the whole stack in the foreground (Ctrl-C / SIGTERM stops it)"
	@echo "make playground  the same with the web playground on (its address is printed)"
	@echo "make bench    the benchmark suite (writes bench/results.json, docs/benchmarks.md)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

include $(wildcard mk/*.mk)

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

protos: venv
	$(BIN)/python scripts/gen_protos.py

protos-check: venv
	$(BIN)/python scripts/gen_protos.py --check
	$(BIN)/python scripts/gen_settings_doc.py --check

check: lint typecheck protos-check

test: venv $(TEST_DEPS) check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: venv $(TEST_DEPS)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

serve: venv $(SERVE_DEPS)
	$(BIN)/python -m stack.serve

# The stack with the web playground on (docs/playground.md); its address is printed at start.
playground: venv $(SERVE_DEPS)
	$(BIN)/python -m scripts.playground

demo: venv $(SERVE_DEPS)
	$(BIN)/python -m scripts.demo $(if $(PHOTOS),--photos $(PHOTOS),)

bench: venv $(SERVE_DEPS)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
