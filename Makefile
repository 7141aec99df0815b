# The two commands of the README: `make run` and `make test`.
# Everything they need is installed here, into .venv, from the package index.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
LINT_PATHS = src tests benchmarks $(wildcard plugins)

.PHONY: run test lint format bench install clean postgres postgres-stop run-postgres

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.cfg setup.py pyproject.toml $(wildcard plugins/*/__init__.py)
	$(BIN)/python -m pip install --quiet --editable '.[testing,demo]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/dbrouter init-db development.ini
	$(BIN)/pserve development.ini

# The demo on PostgreSQL (postgres.ini): a cluster of its own in var/postgres,
# made from the machine's binaries, on 127.0.0.1:$(PG_PORT) only, with
# prepared transactions enabled (two-phase commit).  initdb refuses root:
# the cluster belongs to the postgres user.
PG_BIN ?= $(firstword $(wildcard /usr/lib/postgresql/*/bin))
PG_PORT ?= 6549
PG_DATA = $(CURDIR)/var/postgres
PG_AS = $(if $(filter 0,$(shell id -u)),runuser -u postgres --,)

postgres:
	@test -x "$(PG_BIN)/initdb" || { echo "no PostgreSQL binaries in /usr/lib/postgresql/*/bin"; exit 1; }
	mkdir -p var
	@if [ ! -f $(PG_DATA)/PG_VERSION ]; then \
		install -d -m 700 $(if $(PG_AS),-o postgres,) $(PG_DATA) && \
		$(PG_AS) $(PG_BIN)/initdb -D $(PG_DATA) -U postgres --auth=trust -E UTF8 >/dev/null; fi
	$(PG_AS) $(PG_BIN)/pg_ctl -D $(PG_DATA) -l $(PG_DATA)/server.log -w status >/dev/null || \
	$(PG_AS) $(PG_BIN)/pg_ctl -D $(PG_DATA) -l $(PG_DATA)/server.log -w start \
		-o "-h 127.0.0.1 -p $(PG_PORT) -k $(PG_DATA) -c max_prepared_transactions=20"
	for db in demo_catalog demo_archive; do \
		$(PG_BIN)/psql -h 127.0.0.1 -p $(PG_PORT) -U postgres -tAc \
			"select 1 from pg_database where datname = '$$db'" | grep -q 1 || \
		$(PG_BIN)/createdb -h 127.0.0.1 -p $(PG_PORT) -U postgres $$db; done

postgres-stop:
	$(PG_AS) $(PG_BIN)/pg_ctl -D $(PG_DATA) -m fast stop

run-postgres: install postgres
	$(BIN)/dbrouter init-db postgres.ini
	$(BIN)/pserve postgres.ini

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
