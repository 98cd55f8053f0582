# mmaavi: set-up, tests and demo.
#
#   make demo    install what is missing, then train on the bundled BMMC mosaic -> mmaavi_demo/
#   make test    install what is missing, then lint and run the test suites
#
# The environment is a venv in .venv made with Debian's Python (/usr/bin/python3), so that R's
# reticulate can later share it (see ../shared/docs/ENVIRONMENT.md). torch==2.13.0 goes in
# first (a bare `torch` would pull a multi-GB CUDA build), then the package with its test
# extras under constraints.txt (torch==2.13.0, numpy<2).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_SYS ?= /usr/bin/python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip --quiet
TORCH_SPEC ?= torch==2.13.0
CONSTRAINTS := constraints.txt
STAMP      := $(VENV)/.mmaavi-installed
PY_SRC     := python tests/python
DEMO_OUT   ?= mmaavi_demo
PYTEST_ARGS ?=

# The R suite is added with the R package (DESCRIPTION); until then `make test-r` only says so.
R_TESTS    ?= test-r

.PHONY: help venv install test test-py test-r lint format demo clean

help:
	@echo "make demo     install, then train on the bundled BMMC mosaic (writes $(DEMO_OUT)/)"
	@echo "make test     install, then ruff check + format check + pytest (+ R suite when present)"
	@echo "make venv     create $(VENV) with $(PYTHON_SYS) and install mmaavi[test] (no-op when done)"
	@echo "make lint     ruff check + ruff format --check"
	@echo "make format   ruff format + ruff check --fix"
	@echo "make clean    remove $(VENV), $(DEMO_OUT)/ and caches"

venv install: $(STAMP)

# Debian's python3 lacks ensurepip (hence `-m venv`) until python3-venv is installed.
$(PY):
	@if ! $(PYTHON_SYS) -c 'import ensurepip, venv' >/dev/null 2>&1 \
	    || [ ! -e "$$($(PYTHON_SYS) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo ">> installing python3-venv python3-dev with apt-get"; \
	    apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv python3-dev; \
	  else \
	    echo "error: $(PYTHON_SYS) cannot make a venv with pip; install python3-venv and python3-dev" \
	         "(apt-get install python3-venv python3-dev) and rerun." >&2; \
	    exit 1; \
	  fi; \
	fi
	@echo ">> creating $(VENV) with $(PYTHON_SYS)"
	$(PYTHON_SYS) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml $(CONSTRAINTS)
	@echo ">> installing $(TORCH_SPEC), then mmaavi[test] (-c $(CONSTRAINTS))"
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -c $(CONSTRAINTS) -e ".[test]"
	$(PY) -c "import mmaavi, torch, numpy; print('>> mmaavi', mmaavi.__version__, '| torch', torch.__version__, '| numpy', numpy.__version__)"
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check $(PY_SRC)
	$(VENV)/bin/ruff format --check $(PY_SRC)

format: $(STAMP)
	$(VENV)/bin/ruff format $(PY_SRC)
	$(VENV)/bin/ruff check --fix $(PY_SRC)

test-py: $(STAMP)
	$(PY) -m pytest tests/python $(PYTEST_ARGS)

test-r:
	@if [ -f DESCRIPTION ]; then \
	  echo "error: DESCRIPTION exists but the R suite is not wired into the Makefile yet" >&2; exit 1; \
	else \
	  echo ">> R suite: no R package yet (no DESCRIPTION); skipped"; \
	fi

test: lint test-py $(R_TESTS)

demo: $(STAMP)
	$(VENV)/bin/mmaavi demo --out $(DEMO_OUT)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache build dist
	find python tests -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf python/*.egg-info
