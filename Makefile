# dsa-evidence: `make demo` runs the main job on the embedded default; `make test` checks everything.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
# One test file per worker at a time: module-scoped fixtures (a browser capture run, a TSA)
# are then set up once, not once on each worker (about a fifth less time on 2 cores).
# --durations: every run names its slowest tests, so the 20-minute budget can be kept.
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=30

.PHONY: setup system-packages demo test test-fast bench lint format clean-demo

# Idempotent: the venv is rebuilt only when pyproject.toml changes.
setup: $(VENV)/.installed .venv-replay/.installed system-packages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# wacz (validation) and pywb (replay) pin old packages (pywb would downgrade cryptography):
# they live in a virtual environment of their own, never in the project's.
.venv-replay/.installed:
	$(PYTHON) -m venv .venv-replay
	.venv-replay/bin/python -m pip install --quiet --upgrade pip
	.venv-replay/bin/python -m pip install --quiet 'wacz==0.6.*' 'pywb==2.10.*'
	touch $@

# Debian packages: Chromium (browser captures), Pango and DejaVu fonts (WeasyPrint renders the
# exhibit PDFs), poppler-utils (the tests read those PDFs back), ffmpeg (ffprobe reads the
# facts of archived videos; the post fixtures make their videos with it). apt-get runs only when one of
# them is missing, so this stays cheap once everything is there.
SYSTEM_PACKAGES = chromium libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core poppler-utils ffmpeg

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The main job on the embedded default (SQLite + local store in ./evidence-data): capture the
# bundled fixture site (started and stopped by the demo), preserve the samples, verify, list.
demo: setup
	$(BIN)/python -m jobs.demo

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
