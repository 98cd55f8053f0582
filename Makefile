# mmaavi: set-up, tests and demo.
#
#   make demo    install what is missing, then train on the bundled BMMC mosaic -> mmaavi_demo/
#   make test    install what is missing, then lint and run the test suites
#
# The environment is a venv in .venv made with Debian's Python (/usr/bin/python3), so that R's
# reticulate can later share it (see ../shared/docs/ENVIRONMENT.md). torch==2.13.0 goes in
# first (a bare `torch` would pull a multi-GB CUDA build), then the package with its test
# and R extras under constraints.txt (torch==2.13.0, numpy<2, rpy2<3.6).

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
PY_SRC     := python tests/python benchmarks
DEMO_OUT   ?= mmaavi_demo
PYTEST_ARGS ?=

# The R package (DESCRIPTION, R/, tests/testthat, vignettes/) is checked with R CMD check in
# $(R_DIR), against the Python in $(VENV). R and its packages come from Debian (CRAN is not
# reachable here); ../shared/docs/ENVIRONMENT.md lists them and the offline pitfalls.
R_TESTS    ?= test-r
R_DIR      := build/r
R_LIB      := $(R_DIR)/lib
R_VERSION   = $(shell sed -n 's/^Version:[[:space:]]*//p' DESCRIPTION)
R_APT      := r-base-core r-base-dev r-cran-matrix r-cran-reticulate r-cran-seurat \
              r-cran-seuratobject r-bioc-singlecellexperiment r-cran-testthat r-cran-knitr \
              r-cran-rmarkdown r-bioc-biocstyle pandoc r-cran-roxygen2 qpdf r-cran-uwot \
              r-cran-ggplot2
R_PKGS     := Matrix reticulate Seurat SeuratObject SingleCellExperiment SummarizedExperiment \
              S4Vectors testthat knitr rmarkdown BiocStyle uwot ggplot2
# Python for reticulate; an empty local package repository instead of Debian's CRAN mirror
# (offline: no "unable to access index" noise); no clock check (it needs the network).
R_ENV       = RETICULATE_PYTHON=$(abspath $(PY)) MMAAVI_PYTHON=$(abspath $(PY)) \
              R_PROFILE_USER=$(abspath $(R_DIR))/Rprofile _R_CHECK_SYSTEM_CLOCK_=false \
              _R_CHECK_CRAN_INCOMING_REMOTE_=false OMP_NUM_THREADS=1

.PHONY: help venv install test test-py test-r r-deps r-offline lint format demo demo-r clean bench

help:
	@echo "make demo     install, then train on the bundled BMMC mosaic (writes $(DEMO_OUT)/)"
	@echo "make test     install, then ruff check + format check + pytest + R CMD check (R package)"
	@echo "make test-r   R CMD build (runs the vignettes) + R CMD check --no-manual of the R package"
	@echo "make venv     R (apt, if missing), then $(VENV) with $(PYTHON_SYS) and mmaavi[test,r] (no-op when done)"
	@echo "make bench    peers' venv + every method on every benchmark task (3 seeds ~3 h on 2 cores, BENCH_SEEDS=0 ~25 min-1 h by machine; benchmarks/results/)"
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

# The [r] extra (rpy2, anndata2ri; mmaavi.io) builds against R, so R comes first (r-deps,
# order-only: it checks, and installs only what is missing).
$(STAMP): $(PY) pyproject.toml $(CONSTRAINTS) | r-deps
	@echo ">> installing $(TORCH_SPEC), then mmaavi[test,r] (-c $(CONSTRAINTS))"
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -c $(CONSTRAINTS) -e ".[test,r]"
	$(PY) -c "import mmaavi, torch, numpy; print('>> mmaavi', mmaavi.__version__, '| torch', torch.__version__, '| numpy', numpy.__version__)"
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check $(PY_SRC)
	$(VENV)/bin/ruff format --check $(PY_SRC)

format: $(STAMP)
	$(VENV)/bin/ruff format $(PY_SRC)
	$(VENV)/bin/ruff check --fix $(PY_SRC)

# One pytest process beside the R check (make test runs both with -j2). Two pytest-xdist
# workers were tried: the suite took as long (1780 s vs 1775 s; the two CPUs here give ~1.2x,
# not 2x, and the tests used ~60 % more CPU each), so not used. The slowest tests are listed.
test-py: $(STAMP)
	$(PY) -m pytest tests/python --durations=15 $(PYTEST_ARGS)

# Installs the Debian R packages when one is missing (as root with apt-get), else says what to run.
r-deps:
	@if ! command -v Rscript >/dev/null 2>&1 || ! command -v pandoc >/dev/null 2>&1 \
	    || ! Rscript -e 'for (p in strsplit("$(R_PKGS)", " +")[[1]]) if (!requireNamespace(p, quietly = TRUE)) quit(status = 1)' >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo ">> installing R and its packages with apt-get"; \
	    apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(R_APT); \
	  else \
	    echo "error: R or one of its packages is missing; install them with" \
	         "apt-get install --no-install-recommends $(R_APT)" >&2; \
	    exit 1; \
	  fi; \
	fi

r-offline:
	@mkdir -p $(R_DIR)/repo/src/contrib
	@: > $(R_DIR)/repo/src/contrib/PACKAGES
	@echo 'options(repos = c(CRAN = "file://$(abspath $(R_DIR))/repo"))' > $(R_DIR)/Rprofile

# R CMD build runs the vignettes (they train on the bundled data, and a chunk error fails the
# build); R CMD check runs testthat and checks the built vignettes in inst/doc without running
# their code again (--no-vignettes). R CMD check exits 0 with WARNINGs, so the log's Status
# line decides. R 4.2's R CMD build copies the whole directory (.venv included) before applying
# .Rbuildignore, so only the R package's files are staged; the staged LICENSE is R's two-line
# form of the MIT licence ("MIT + file LICENSE"), taken from the root LICENSE (full text, for
# pyproject).
test-r: $(STAMP) r-deps r-offline
	@if [ ! -f DESCRIPTION ]; then echo ">> R suite: no R package (no DESCRIPTION); skipped"; exit 0; fi
	rm -rf $(R_DIR)/mmaavi.Rcheck $(R_DIR)/mmaavi_*.tar.gz $(R_DIR)/src
	mkdir -p $(R_DIR)/src/mmaavi/tests
	cp -r DESCRIPTION NAMESPACE .Rbuildignore R man inst vignettes $(R_DIR)/src/mmaavi/
	cp -r tests/testthat.R tests/testthat $(R_DIR)/src/mmaavi/tests/
	sed -n 's/^Copyright (c) \([0-9]*\) \(.*\)$$/YEAR: \1\nCOPYRIGHT HOLDER: \2/p' LICENSE \
	  > $(R_DIR)/src/mmaavi/LICENSE
	@grep -q '^COPYRIGHT HOLDER: .' $(R_DIR)/src/mmaavi/LICENSE \
	  || { echo "error: no 'Copyright (c) YEAR HOLDER' line in LICENSE" >&2; exit 1; }
	cd $(R_DIR) && $(R_ENV) R CMD build src/mmaavi
	cd $(R_DIR) && $(R_ENV) R CMD check --no-manual --no-vignettes mmaavi_$(R_VERSION).tar.gz
	@status=$$(sed -n 's/^Status: //p' $(R_DIR)/mmaavi.Rcheck/00check.log); \
	if [ "$$status" != "OK" ]; then \
	  echo "error: R CMD check status: $$status (see $(R_DIR)/mmaavi.Rcheck/00check.log)" >&2; exit 1; \
	fi; \
	echo ">> R CMD check: Status: OK"

# The Python and R suites are single-threaded (one torch thread each): on a 2-core machine
# they run side by side, each target's output printed whole when it ends.
test: lint
	$(MAKE) --no-print-directory -j2 --output-sync=target test-py $(R_TESTS)

demo: $(STAMP)
	$(VENV)/bin/mmaavi demo --out $(DEMO_OUT)
	@$(MAKE) --no-print-directory demo-r

# The Seurat workflow of the R package on the same data -> $(DEMO_OUT)/R (plots and tables).
demo-r: $(STAMP) r-deps r-offline
	mkdir -p $(R_LIB)
	$(R_ENV) R CMD INSTALL --no-test-load -l $(R_LIB) . >$(R_DIR)/install.log 2>&1 \
	  || { cat $(R_DIR)/install.log; exit 1; }
	$(R_ENV) R_LIBS=$(abspath $(R_LIB)) Rscript inst/scripts/demo.R $(DEMO_OUT)/R

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache build dist
	find python tests -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf python/*.egg-info

# Benchmarks against the peers (issue 6; not part of `make test`). The peers live in their own
# venv, never in the package's: torch==2.13.0 first (CPU wheel), then the pinned requirements.
PEERS_VENV  := benchmarks/.venv-peers
PEERS_PY    := $(PEERS_VENV)/bin/python
PEERS_STAMP := $(PEERS_VENV)/.peers-installed
BENCH_SEEDS ?= 0 1 2
BENCH_JOBS  ?= 2
# wall-clock limit per run (s); raise it when other jobs share the cores
BENCH_TIMEOUT ?= 1800

$(PEERS_STAMP): benchmarks/requirements-peers.txt
	@echo ">> creating $(PEERS_VENV) for the peers (scvi-tools, scglue, scmidas, scib-metrics)"
	$(PYTHON_SYS) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip --quiet install "$(TORCH_SPEC)"
	$(PEERS_PY) -m pip --quiet install -c <(echo "$(TORCH_SPEC)") -r benchmarks/requirements-peers.txt
	@# scmidas 0.3.0 declares torch<2.11 but runs on 2.13; its real imports are pinned above
	$(PEERS_PY) -m pip --quiet install --no-deps scmidas==0.3.0
	@# scglue's guidance graph calls the bedtools binary
	@if ! command -v bedtools >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bedtools; \
	  else echo "error: GLUE needs bedtools: apt-get install bedtools" >&2; exit 1; fi; \
	fi
	@touch $@

bench: $(STAMP) $(PEERS_STAMP)
	$(PY) benchmarks/bench.py prepare
	$(PY) benchmarks/bench.py run --seeds $(BENCH_SEEDS) --jobs $(BENCH_JOBS) --timeout $(BENCH_TIMEOUT)
	$(PEERS_PY) benchmarks/bench.py evaluate --jobs $(BENCH_JOBS)
	$(PEERS_PY) benchmarks/bench.py report
