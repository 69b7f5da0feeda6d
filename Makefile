# The two commands: `make run` and `make test`. Everything else is a step they share.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PACKAGES := server rooms kernels

.PHONY: run test install lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: the server on the embedded default (SQLite under var/), with a demo room
run: install
	$(BIN)/clarityhire serve --demo

lint: install
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/ruff format --check $(PACKAGES) tests bench

typecheck: install
	$(BIN)/mypy

## test: lint, type-check, then the whole suite against real servers
test: lint typecheck
	$(BIN)/pytest -q

## bench: the sync benchmark (see bench/README.md); writes bench/results/sync.json
bench: install
	$(BIN)/python bench/sync.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
