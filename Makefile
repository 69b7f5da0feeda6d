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
WEB_MODULES   := web/node_modules/.installed-stamp
WEB_BUNDLE    := web/dist/room.js

.PHONY: run test install kernel-env web system-packages lint typecheck bench bench-media clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages: bubblewrap (the kernels' sandbox), python3-venv (their Python), chromium
# (the browser the end-to-end tests drive through Playwright; never its own download) and
# iproute2 (`ip`, to bring up loopback in the media tests' network namespace).
system-packages:
	@command -v bwrap >/dev/null && command -v chromium >/dev/null && command -v ip >/dev/null && \
	  $(KERNEL_PYTHON) -c 'import ensurepip' 2>/dev/null || \
	  (apt-get update -q && apt-get install -y -q bubblewrap python3-venv chromium iproute2)

$(KERNEL_STAMP): kernels/build_env.sh | system-packages
	kernels/build_env.sh $(KERNEL_ENV) $(KERNEL_PYTHON)
	touch $(KERNEL_STAMP)

## kernel-env: the world-readable Python that sandboxed kernels run (see kernels/sandbox.py)
kernel-env: $(KERNEL_STAMP)

# The room page: npm packages from web/package-lock.json, bundled by esbuild into web/dist.
$(WEB_MODULES): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $(WEB_MODULES)

$(WEB_BUNDLE): $(WEB_MODULES) web/build.mjs $(wildcard web/src/*)
	cd web && npm run --silent build

## web: build the room page's bundle into web/dist (served under /assets/)
web: $(WEB_BUNDLE)

install: system-packages $(STAMP) $(KERNEL_STAMP) $(WEB_BUNDLE)

## run: the server on the embedded default (SQLite under var/), with a demo room
run: install
	$(BIN)/clarityhire serve --demo

lint: install
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/ruff format --check $(PACKAGES) tests bench

typecheck: install
	$(BIN)/mypy

## test: lint, type-check, then the whole suite against real servers. Media tests run in a
## network namespace with only loopback (unshare --net), so no media packet leaves 127.0.0.1.
test: lint typecheck
	$(BIN)/pytest -q -m "not media"
	unshare --net -- sh -c 'ip link set lo up && exec $(BIN)/pytest -q -m media'

## bench-media: server CPU for recorded and relayed streams, in a loopback-only namespace
bench-media: install
	unshare --net -- sh -c 'ip link set lo up && exec $(BIN)/python bench/media.py'

## bench: the sync benchmark (see bench/README.md); writes bench/results/sync.json
bench: install
	$(BIN)/python bench/sync.py

clean:
	rm -rf $(VENV) $(KERNEL_ENV) web/node_modules web/dist var .mypy_cache .ruff_cache .pytest_cache
