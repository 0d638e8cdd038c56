# The two quickstart targets; each creates .venv (and the system packages the tests need) when missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_WORKERS ?= 2    # pytest-xdist workers; the Slurm tests share one worker (tests/conftest.py)

.PHONY: demo test test-fast lint env system

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

env: $(STAMP)

system:
	bash tools/setup_system.sh

demo: $(STAMP)
	$(PY) tools/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check dist_cluster recipes slurm tools tests

test: $(STAMP) system lint
	. tools/slurm_local/env.sh && $(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist loadgroup --durations=10 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow and not slurm" tests
