# Two commands: `make run` and `make test`. Everything they need is set up here.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
RUN_STAMP  := $(VENV)/.run-stamp
DEV_STAMP  := $(VENV)/.dev-stamp

.PHONY: run test test-fast lint format bench services clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Running needs only the package (and the Redis bus, an option of a running server).
$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[redis]'
	@touch $@

# Tests and lint add their tools on top.
$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[redis,test,lint,aiohttp]'
	@touch $@ $(RUN_STAMP)

## Start Runyard on SQLite with the offline model at http://127.0.0.1:8321
run: $(RUN_STAMP)
	$(VENV)/bin/runyard migrate
	$(VENV)/bin/runyard serve

## Set up and run the whole test suite
test: $(DEV_STAMP)
	@$(PY) -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$status

## The fast subset while working: everything but the suites marked slow
test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -m "not slow"

## ruff (format check and lint) and pyright on runyard/
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff format --check runyard
	$(VENV)/bin/ruff check runyard
	$(VENV)/bin/pyright

format: $(DEV_STAMP)
	$(VENV)/bin/ruff format runyard
	$(VENV)/bin/ruff check --fix runyard

## Benchmarks (not tests): prints a table
bench: $(DEV_STAMP)
	$(PY) -m bench

## Start local PostgreSQL and Redis if they are down (for the tests that need them)
services:
	bash .ci/services

clean:
	rm -rf $(VENV) .runyard .pytest_cache
