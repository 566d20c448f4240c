# The verbs people type. `make run` and `make test` create the environment first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
# Google client libraries warn about Python 3.10 support on every import.
export PYTHONWARNINGS := ignore::FutureWarning
export PYTHONUNBUFFERED := 1

# Python 3.10 (TFX 1.16 supports no newer Python): PYTHON310, else the first one found.
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 \
	/usr/local/bin/python3.10 /usr/bin/python3.10; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo $$p; break; }; done)

.PHONY: setup run test test-fast lint bench serve lock clean

setup: $(STAMP)

# Re-installs only when the lock or the packaging changed; otherwise returns at once.
$(STAMP): requirements.lock setup.py
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it (pyenv install 3.10) or set PYTHON310=/path/to/python3.10"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON310) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "$$(grep '^uv==' requirements.lock)"
	$(BIN)/uv pip sync --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

run: setup
	$(BIN)/python runners/local_runner.py

# Two workers (pytest-xdist) on the 2-core machines this targets: pipeline runs are mostly one
# core each, so two at a time nearly halve the wall time. --dist loadfile keeps each test file on
# one worker, so a module's shared run is made once. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: setup
	$(BIN)/pytest -m "not e2e"

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench

serve: setup
	$(BIN)/tfxt serving serve

# Regenerate the pinned lock from requirements.in (needs the registry).
lock: setup
	$(BIN)/uv pip compile --python-version 3.10 --python-platform x86_64-manylinux_2_36 \
		requirements.in -o requirements.lock

clean:
	rm -rf outputs
