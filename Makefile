# channelhub developer entry points. `make run` and `make test` work on a fresh clone with
# Python 3.11+ and make; they create .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= config/hub.yaml

.PHONY: install run test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

DEMO := config/demo/customers.csv config/demo/orders.csv config/demo/invoices.csv

run: install
	$(BIN)/channelhub customers import $(DEMO) --config $(CONFIG)
	@echo "channelhub: log in at http://127.0.0.1:8080/console/ as demo / demo"
	@echo "channelhub: write as a customer at http://127.0.0.1:8080/chat/"
	$(BIN)/channelhub serve --config $(CONFIG)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/context.py
	$(BIN)/python bench/dispatch.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
