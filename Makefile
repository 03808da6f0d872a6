# Build, run and test the loyalty ledger. Every target does its own set-up (virtual environment, install,
# code generation) and is cheap to repeat: the install is redone only when pyproject.toml changes and the
# code generation only when the .proto files change.
#
#   make serve            start the service on the embedded store (./var/ledger.db) as a sandbox, reference program loaded
#   make test             lint, type-check, proto lint, the Node client's build, the whole test suite, then the
#                         installed wheel's check
#   make node-client      npm ci (redone only when package-lock.json changes) and build clients/node from proto/
#   make test-deep        the model-based and property tests with many more and longer random histories
#   make mutation         mutmut over policies/ and ledger/domain/ against tests/unit; writes docs/mutation.md
#   make mutation-sample  a fixed sample of the rule code's mutants; fails if a non-equivalent one survives

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON       ?= python3
VENV         ?= .venv
EXTRAS       ?= dev,postgres,kurrentdb,nats,otel
BUF_VERSION  ?= 1.75.0
LEDGER_STORE ?= sqlite:///$(CURDIR)/var/ledger.db
# `make serve` is a sandbox: the public development identity pepper is allowed (LEDGER_SANDBOX=0 to refuse it).
LEDGER_SANDBOX ?= 1
ARGS         ?=
PYTEST_ARGS  ?=

PY           := $(VENV)/bin/python
VENV_STAMP   := $(VENV)/.installed-stamp
BUF          := npm_config_loglevel=error npx --yes @bufbuild/buf@$(BUF_VERSION)
# Without a buf.yaml of its own, the proto module is linted with buf's STANDARD rules.
BUF_CONFIG   := {"version":"v2","modules":[{"path":"proto"}],"lint":{"use":["STANDARD"]}}
PROTO_FILES  := $(wildcard proto/loyalty/v1/*.proto)
RELEASED_PROTO ?= proto/released/loyalty-v1-0.1.0.binpb
MYPY_DIRS    := ledger projections policies clients bench tests

.PHONY: help venv gen node-client serve test test-deep lint typecheck buf-lint buf-breaking pytest wheel-check bench mutation mutation-sample clean distclean

help:
	@echo "make serve      start the ledger on ./var/ledger.db with the reference program (extra flags: ARGS=...)"
	@echo "make test       gen, ruff, mypy, buf lint, pytest (extra pytest flags: PYTEST_ARGS=...), then wheel-check"
	@echo "make test-deep  the model-based and property tests with many more examples (LEDGER_DEEP_TESTS=1; minutes)"
	@echo "make venv       create $(VENV) and install the package with extras [$(EXTRAS)]"
	@echo "make gen        generate the Python package loyalty/ from proto/"
	@echo "make node-client  npm ci and build the TypeScript client in clients/node from proto/ (needs npm)"
	@echo "make lint       ruff check and the import contracts (lint-imports, pyproject.toml)"
	@echo "make typecheck  mypy (strict)"
	@echo "make buf-lint   buf lint of proto/ (needs npx)"
	@echo "make buf-breaking  buf breaking of proto/ against the last released contract (needs npx)"
	@echo "make wheel-check  build the wheel, install it in a fresh venv outside the tree, serve, health, stop, a bundle round trip"
	@echo "make bench      run bench/run.py, which writes BENCHMARKS.md (extra flags: ARGS=...)"
	@echo "make mutation   mutmut over policies/ and ledger/domain/ (slow; one worker), report in docs/mutation.md"
	@echo "make mutation-sample  mutants sampled by a fixed seed from the rule code; fails on a survivor"
	@echo "make clean      remove generated code, build output and caches (make distclean: also $(VENV) and var/)"

# --- set-up ---------------------------------------------------------------------------------------------------

venv: $(VENV_STAMP)

# The editable install is in "compat" mode: it puts the repository root on the venv's sys.path, so the
# generated package loyalty/ (which does not exist yet at install time) is importable from `.venv/bin/ledger`.

$(VENV_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed, $(PYTHON) is " + sys.version.split()[0] + " (choose another with PYTHON=...)")'
	@if [ ! -x "$(PY)" ]; then echo "venv: creating $(VENV)"; $(PYTHON) -m venv "$(VENV)"; fi
	@echo "venv: installing the package and its extras [$(EXTRAS)] into $(VENV)"
	$(PY) -m pip install --disable-pip-version-check --quiet -e '.[$(EXTRAS)]' --config-settings editable_mode=compat
	@touch "$@"

gen: venv
	@PYTHON="$(PY)" scripts/gen_proto.sh

# The Node client: its packages as package-lock.json pins them (no install scripts run), then `npm run build`
# (buf generate from proto/, then tsc). tests/e2e/test_node_client.py runs its suite against a real server.
NODE_DIR     := clients/node
NODE_STAMP   := $(NODE_DIR)/node_modules/.installed-stamp

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --ignore-scripts
	@touch "$@"

node-client:
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "node-client: SKIPPED - npm is not installed (install Node.js and npm to build and test clients/node)"; \
	else \
		$(MAKE) $(NODE_STAMP) && echo "cd $(NODE_DIR) && npm run build" && cd $(NODE_DIR) && npm run --silent build; \
	fi

# --- run ------------------------------------------------------------------------------------------------------

serve: gen
	@mkdir -p var
	LEDGER_STORE='$(LEDGER_STORE)' LEDGER_SANDBOX='$(LEDGER_SANDBOX)' $(VENV)/bin/ledger serve $(ARGS)

bench: gen
	@test -f bench/run.py || { echo "bench: bench/run.py does not exist" >&2; exit 1; }
	$(PY) bench/run.py $(ARGS)

# --- checks ---------------------------------------------------------------------------------------------------

test: gen
	@$(MAKE) lint
	@$(MAKE) typecheck
	@$(MAKE) buf-lint
	@$(MAKE) node-client
	@$(MAKE) pytest
	@$(MAKE) wheel-check

# The same tests as in `make test`, with budgets for a night run rather than CI (LEDGER_DEEP_TESTS=1; the
# model-based test also takes LEDGER_MODEL_EXAMPLES and LEDGER_MODEL_STEPS).
test-deep: gen
	LEDGER_DEEP_TESTS=1 $(VENV)/bin/pytest -p no:cacheprovider --timeout=0 tests/model tests/property $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	@$(MAKE) buf-breaking

# mypy's `files` (pyproject.toml) name these directories; here only those that hold Python code yet are passed.
typecheck: gen
	@targets=""; for d in $(MYPY_DIRS); do \
		if [ -d "$$d" ] && [ -n "$$(find "$$d" -name '*.py' -print -quit)" ]; then targets="$$targets $$d"; fi; \
	done; \
	if [ -z "$$targets" ]; then echo "typecheck: no Python code to check yet"; exit 0; fi; \
	echo "$(VENV)/bin/mypy$$targets"; $(VENV)/bin/mypy $$targets

buf-lint:
	@if ! command -v npx >/dev/null 2>&1; then \
		echo "buf lint: SKIPPED - npx is not installed (install Node.js and npm to lint the proto files)"; \
	elif [ -z "$(PROTO_FILES)" ]; then \
		echo "buf lint: no .proto files under proto/loyalty/v1/ yet"; \
	elif [ -f buf.yaml ]; then \
		echo "$(BUF) lint"; $(BUF) lint; \
	elif [ -f proto/buf.yaml ]; then \
		echo "$(BUF) lint proto"; $(BUF) lint proto; \
	else \
		echo "buf lint proto/ (STANDARD rules)"; $(BUF) lint --config '$(BUF_CONFIG)'; \
	fi

buf-breaking:
	@if ! command -v npx >/dev/null 2>&1; then \
		echo "buf breaking: SKIPPED - npx is not installed (install Node.js and npm to check the proto contract)"; \
	else \
		echo "$(BUF) breaking --against $(RELEASED_PROTO)"; $(BUF) breaking --against $(RELEASED_PROTO); \
	fi

pytest: gen
	@echo "$(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)"; \
	$(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)

# The wheel as a user gets it: built from the tree (setup.py generates loyalty/), installed into a fresh venv in
# a temporary folder, `ledger serve` on a temporary SQLite store, `ledger health`, SIGTERM, then an evidence bundle
# exported and checked by `ledger verify-bundle` with no store, and once altered (about 40 s).
wheel-check: venv
	PYTHON="$(PY)" VENV_PYTHON="$(PYTHON)" scripts/wheel_check.sh

# --- mutation testing (docs/mutation.md) -------------------------------------------------------------------
# mutmut works in mutants/ (kept between runs: only functions that changed are tested again; remove it to
# start afresh). One worker, niced: the run shares the machine.
MUTATION_JOBS ?= 1
MUTATION_ARGS ?=

mutation: gen
	@start=$$(date +%s); rc=0; \
	nice -n 10 $(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) $(MUTATION_ARGS) || rc=$$?; \
	secs=$$(( $$(date +%s) - start )); \
	$(PY) scripts/mutation_report.py --wall-time "$$((secs / 60)) min $$((secs % 60)) s"; \
	exit "$$rc"

mutation-sample: gen
	nice -n 10 $(PY) scripts/mutation_sample.py $(MUTATION_ARGS)

# --- housekeeping ---------------------------------------------------------------------------------------------

clean:
	rm -rf loyalty build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis mutants
	rm -rf clients/node/gen clients/node/dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf "$(VENV)" var clients/node/node_modules
