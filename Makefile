# chatsite: `make run` serves the app, `make test` runs lint and the whole test suite.
# Both work on a fresh Debian/Ubuntu machine with Python 3.11 and nothing else.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format bench browser nginx node-sdk clean

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); \
	    else echo "Cannot create a virtualenv: install python3-venv (sudo apt-get install python3-venv)"; exit 1; fi; }; \
	fi
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet ".[dev]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m chatsite.embedded

# Debian's Chromium drives the browser tests; Playwright cannot download its own here.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)) >/dev/null; \
	  else echo "Browser tests will be skipped: install chromium (sudo apt-get install chromium)"; fi; \
	fi

# Debian's nginx for the deployment test (tests/deploy/), which runs its own instance.
nginx:
	@if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq nginx || (apt-get update -qq && apt-get install -y -qq nginx)) >/dev/null; \
	  else echo "Deployment test will be skipped: install nginx (sudo apt-get install nginx)"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The openai Node SDK for its conformance test (skipped where there is no npm).
node-sdk:
	@if command -v npm >/dev/null; then npm ci --silent --no-audit --no-fund --prefix tests/node; \
	else echo "Node SDK test will be skipped: install nodejs and npm"; fi

test: $(STAMP) browser nginx node-sdk lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) data
