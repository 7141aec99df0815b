# The two commands of the README: `make run` and `make test`.
# Everything they need is installed here, into .venv, from the package index.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
LINT_PATHS = src tests benchmarks $(wildcard plugins)

.PHONY: run test lint format bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.cfg setup.py pyproject.toml $(wildcard plugins/*/__init__.py)
	$(BIN)/python -m pip install --quiet --editable '.[testing,demo]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/dbrouter init-db development.ini
	$(BIN)/pserve development.ini

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: install
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install --quiet --editable '.[testing,bench]'
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info var
