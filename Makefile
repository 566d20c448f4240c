# The verbs people type. `make run` and `make test` create the environment first.
SHELL := /bin/bash
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
# Google client libraries warn about Python 3.10 support on every import.
export PYTHONWARNINGS := ignore::FutureWarning
export PYTHONUNBUFFERED := 1

# Two stacks, one code base. STACK=tfx116: Python 3.10 + TFX 1.16, requirements.lock, .venv.
# STACK=tfx121: Python 3.13 + TFX 1.21, requirements-py313.lock, .venv-py313; its wheels
# (ml-metadata 1.21) need glibc >= 2.39, e.g. Debian 13 (.ci/tfx121 runs it in a Debian 13 root).
# Unset, STACK is tfx121 where glibc >= 2.39 and a Python 3.13 is found, tfx116 otherwise.
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 \
	/usr/local/bin/python3.10 /usr/bin/python3.10; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo $$p; break; }; done)
PYTHON313 ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 \
	/usr/local/bin/python3.13 /usr/bin/python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 && { echo $$p; break; }; done)
GLIBC := $(shell getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $$2}')
ifndef STACK
STACK := $(shell if [ -n "$(PYTHON313)" ] && printf '2.39\n%s\n' "$(GLIBC)" | sort -C -V; \
	then echo tfx121; else echo tfx116; fi)
endif

ifeq ($(STACK),tfx116)
PYTHON := $(PYTHON310)
PYTHON_VERSION := 3.10
LOCK := requirements.lock
PLATFORM := x86_64-manylinux_2_36
VENV := .venv
MIN_GLIBC := 2.17
NO_PYTHON := Python 3.10 not found: install it (pyenv install 3.10) or set PYTHON310=/path/to/python3.10
else ifeq ($(STACK),tfx121)
PYTHON := $(PYTHON313)
PYTHON_VERSION := 3.13
LOCK := requirements-py313.lock
PLATFORM := x86_64-manylinux_2_39
VENV := .venv-py313
MIN_GLIBC := 2.39
NO_PYTHON := Python 3.13 not found: install it or set PYTHON313=/path/to/python3.13
else
$(error STACK must be tfx116 (Python 3.10, TFX 1.16) or tfx121 (Python 3.13, TFX 1.21), not "$(STACK)")
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint bench serve lock clean

setup: $(STAMP)

# Re-installs only when the lock or the packaging changed; otherwise returns at once.
$(STAMP): $(LOCK) setup.py
	@test -n "$(PYTHON)" || { echo "$(NO_PYTHON)"; exit 1; }
	@printf '$(MIN_GLIBC)\n%s\n' "$(GLIBC)" | sort -C -V || { echo "STACK=$(STACK) needs glibc >= \
	$(MIN_GLIBC), this machine has $(GLIBC): use STACK=tfx116, or .ci/tfx121 (a Debian 13 root)"; exit 1; }
	@echo "Stack $(STACK): Python $(PYTHON_VERSION), $(LOCK), $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "$$(grep '^uv==' $(LOCK))"
	$(BIN)/uv pip sync --python $(BIN)/python $(LOCK)
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

# FORCE=1 runs even when nothing changed since a run that had nothing to do.
run: setup
	$(BIN)/python runners/local_runner.py $(if $(FORCE),--force)

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

# Regenerate the stack's pinned lock from its .in file (needs the registry).
lock: setup
	UV_PYTHON_DOWNLOADS=never $(BIN)/uv pip compile --python-version $(PYTHON_VERSION) \
		--python-platform $(PLATFORM) $(LOCK:.lock=.in) -o $(LOCK)

clean:
	rm -rf outputs
