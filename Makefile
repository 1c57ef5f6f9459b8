# The two set-up commands of the README are `make reproduce` and `make test`.
# Each creates .venv on first use and installs everything it needs into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# CPU build of torch: on this project's machines this release installs from local disk in
# seconds. GPU users: see README ("GPU install") - install the CUDA build into .venv first.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_FLAGS ?=
ifdef SLOW
PYTEST_FLAGS += --slow
endif

.PHONY: reproduce test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

reproduce: $(STAMP)
	$(BIN)/mvm derive forms
	$(BIN)/mvm verify --quick --json results/verification_quick.json --markdown results/verification_quick.md

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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
