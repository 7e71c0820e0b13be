# The two commands: `make run` and `make test`. Both create .venv and install when needed.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install migrate run test lint bench worker clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required (python3.11 or newer on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python backend/pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e 'backend[dev,bench]'
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/reportctl db upgrade

run: migrate
	$(BIN)/reportctl serve

test: install
	cd backend && ../$(BIN)/python -m pytest $(PYTEST_ARGS)

LINTED := app tests alembic celery_manager.py ../bench

# Style, formatting, strict types and the layer contracts (pyproject's [tool.importlinter]).
lint: install
	cd backend && ../$(BIN)/ruff check $(LINTED)
	cd backend && ../$(BIN)/ruff format --check $(LINTED)
	cd backend && ../$(BIN)/mypy app celery_manager.py
	cd backend && ../$(BIN)/lint-imports

bench: install
	$(BIN)/python bench/queue_overhead.py
	$(BIN)/python bench/reports.py

clean:
	rm -rf $(VENV) var
