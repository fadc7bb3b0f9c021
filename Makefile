# channelhub developer entry points. `make run` and `make test` work on a fresh clone with
# Python 3.11+ and make; they create .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= config/hub.yaml

.PHONY: install console run test lint format bench bench-full clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The agent console is TypeScript in console/, built into hub/console/static/ (committed, so a
# pip install serves it without node). With npm on the machine, `make` installs the pinned
# toolchain when console/package-lock.json changes and rebuilds when a source changed.
NPM := $(shell command -v npm 2>/dev/null)
CONSOLE_SOURCES := $(shell find console/src console/index.html console/build.mjs -type f 2>/dev/null)
NODE_STAMP := console/node_modules/.installed-stamp
CONSOLE_STAMP := console/node_modules/.built-stamp

$(NODE_STAMP): console/package-lock.json
	cd console && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(CONSOLE_STAMP): $(NODE_STAMP) $(CONSOLE_SOURCES)
	cd console && node build.mjs
	touch $(CONSOLE_STAMP)

ifeq ($(NPM),)
console:
	@echo "channelhub: npm not found; serving the console as built in hub/console/static"
else
console: $(CONSOLE_STAMP)
endif

install: $(STAMP) console

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
	$(if $(NPM),cd console && npx --no-install tsc --noEmit -p .)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make bench` runs every benchmark at a size that finishes in a few minutes; `make bench-full`
# runs them at the sizes bench/RESULTS.md quotes.
bench: install
	$(BIN)/python bench/pipeline.py --quick
	$(BIN)/python bench/rules_engine.py --quick
	$(BIN)/python bench/context.py --customers 20000 --lookups 2000
	$(BIN)/python bench/dispatch.py --quick
	$(BIN)/python bench/email_ingest.py --mails 300
	$(BIN)/python bench/sms.py --messages 1000
	$(BIN)/python bench/voice.py --calls 500
	$(BIN)/python bench/fax.py --pages 8
	$(BIN)/python bench/sockets.py --sockets 500
	$(BIN)/python bench/bus.py --quick
	$(BIN)/python bench/cross_node.py --samples 20

bench-full: install
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/rules_engine.py
	$(BIN)/python bench/context.py
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/email_ingest.py
	$(BIN)/python bench/sms.py
	$(BIN)/python bench/voice.py
	$(BIN)/python bench/fax.py
	$(BIN)/python bench/sockets.py
	$(BIN)/python bench/bus.py
	$(BIN)/python bench/cross_node.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
