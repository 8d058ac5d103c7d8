# Two commands: `make run` and `make test`. Everything they need is set up here.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

.PHONY: run test bench services clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,redis]'
	@touch $(STAMP)

## Start Runyard on SQLite with the offline model at http://127.0.0.1:8321
run: $(STAMP)
	$(VENV)/bin/runyard migrate
	$(VENV)/bin/runyard serve

## Set up and run the whole test suite
test: $(STAMP)
	@$(PY) -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$status

## Benchmarks (not tests): prints a table
bench: $(STAMP)
	$(PY) -m bench

## Start local PostgreSQL and Redis if they are down (for the tests that need them)
services:
	bash .ci/services

clean:
	rm -rf $(VENV) .runyard .pytest_cache
