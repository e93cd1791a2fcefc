# dsa-evidence: `make demo` runs the main job on the embedded default; `make test` checks everything.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test test-fast bench lint format clean-demo

# Idempotent: the venv is rebuilt only when pyproject.toml changes.
setup: $(VENV)/.installed /usr/bin/chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

/usr/bin/chromium:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null

# Archive the bundled samples into ./evidence-data (SQLite + local store), verify, list.
demo: setup
	$(BIN)/evidence db upgrade
	$(BIN)/evidence ingest fixtures/samples/*.csv fixtures/samples/*.html \
		--collection demo --source-url https://transparency.dsa.ec.europa.eu/ \
		--note "make demo: bundled sample"
	$(BIN)/evidence verify --all
	$(BIN)/evidence snapshots list --collection demo --limit 10

test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The quick inner loop: no slow end-to-end or fault-injection tests.
test-fast: setup
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m benchmarks.run

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean-demo:
	rm -rf evidence-data
