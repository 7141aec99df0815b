# The two commands of the README: `make run` and `make test`.
# Everything they need is installed here, into .venv, from the package index.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test lint format bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --editable '.[testing]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/dbrouter init-db development.ini
	$(BIN)/pserve development.ini

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install --quiet --editable '.[testing,bench]'
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info var
