# Each target creates .venv and installs what it needs, so it works on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test fuzz chaos lint typecheck bench compare schemas clean

$(STAMP): pyproject.toml schemas/pyproject.toml devtools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./schemas -e '.[dev]' -e ./devtools
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/user-events-consumer dev

test: $(STAMP)
	$(BIN)/ruff check consumer schemas devtools tests
	$(BIN)/mypy
	$(BIN)/pytest -q -n 4 --dist worksteal --ignore=tests/chaos

# The end-to-end fuzz test with many more generated batches than `make test` sends
# (FUZZ_EXAMPLES=N to choose; 500 take about 8 minutes).
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} $(BIN)/pytest -q tests/integration/test_fuzz.py

# A seeded random schedule of faults (PostgreSQL and the broker behind proxies that pass,
# refuse or black-hole; SIGTERMs and restarts) during a drain; prints its seed.
# CHAOS_SECONDS=N to choose the length (300 by default), CHAOS_SEED=S to replay one.
chaos: $(STAMP)
	CHAOS_SECONDS=$${CHAOS_SECONDS:-300} $(BIN)/pytest -q -s tests/chaos

lint: $(STAMP)
	$(BIN)/ruff check consumer schemas devtools tests
	$(BIN)/ruff format --check consumer schemas devtools tests

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/user-events-consumer bench

# This checkout's drains against another version's, alternating: make compare BASE=main
BASE ?= main
ROUNDS ?= 8
compare: $(STAMP)
	$(BIN)/user-events-consumer compare $(BASE) . --rounds $(ROUNDS) --python $(PYTHON)

# The contract's build steps (schemas/schemagen/, not in its wheel): the JSON Schema files
# of the package and schemas/asyncapi.yaml, from the models.
schemas: $(STAMP)
	PYTHONPATH=schemas $(BIN)/python -m schemagen.jsonschemas
	PYTHONPATH=schemas $(BIN)/python -m schemagen.asyncapi schemas/asyncapi.yaml

clean:
	rm -rf $(VENV) .dev .cache .pytest_cache .mypy_cache .ruff_cache
