# The two commands: `make run` and `make test`. Everything else is a step they share.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PACKAGES := server rooms kernels
# Candidate code runs in Jupyter kernels as an unprivileged uid inside bubblewrap: their Python
# must be world-readable, so it is Debian's, not the (root-only) interpreter of $(VENV).
KERNEL_PYTHON ?= /usr/bin/python3
KERNEL_ENV    := .kernel-env
KERNEL_STAMP  := $(KERNEL_ENV)/.installed-stamp

.PHONY: run test install kernel-env system-packages lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages the kernels need: bubblewrap (the sandbox) and python3-venv (their Python).
system-packages:
	@command -v bwrap >/dev/null && $(KERNEL_PYTHON) -c 'import ensurepip' 2>/dev/null || \
	  (apt-get update -q && apt-get install -y -q bubblewrap python3-venv)

$(KERNEL_STAMP): kernels/build_env.sh | system-packages
	kernels/build_env.sh $(KERNEL_ENV) $(KERNEL_PYTHON)
	touch $(KERNEL_STAMP)

## kernel-env: the world-readable Python that sandboxed kernels run (see kernels/sandbox.py)
kernel-env: $(KERNEL_STAMP)

install: $(STAMP) $(KERNEL_STAMP)

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
	rm -rf $(VENV) $(KERNEL_ENV) var .mypy_cache .ruff_cache .pytest_cache
