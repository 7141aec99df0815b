# The two commands of the README: `make run` and `make test`.
# Everything they need is installed here, into .venv, from the package index.
# `make test` also runs the suite in .venv-sa20: the same install with the newest
# SQLAlchemy 2.0.x instead of 2.1.x, the two series setup.cfg supports.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
VENV_SA20 ?= .venv-sa20
# The series each virtualenv tests; pip takes the newest release of each on a
# fresh install (the install stamp keeps what is there until setup files change).
SA21 = SQLAlchemy >= 2.1, < 2.2
SA20 = SQLAlchemy >= 2.0.58, < 2.1
EXTRAS = .[testing,demo]
LINT_PATHS = src tests benchmarks $(wildcard plugins)
SETUP_FILES = setup.cfg pyproject.toml $(wildcard plugins/*/__init__.py)

.PHONY: run test test-sa21 test-sa20 lint format bench install install-sa20 clean postgres postgres-stop run-postgres

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python $(SETUP_FILES)
	$(BIN)/python -m pip install --quiet --editable '$(EXTRAS)' '$(SA21)'
	touch $@

$(VENV_SA20)/bin/python:
	$(PYTHON) -m venv $(VENV_SA20)

$(VENV_SA20)/.installed: $(VENV_SA20)/bin/python $(SETUP_FILES)
	$(VENV_SA20)/bin/python -m pip install --quiet --editable '$(EXTRAS)' '$(SA20)'
	touch $@

install: $(VENV)/.installed

install-sa20: $(VENV_SA20)/.installed

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
	for db in demo_catalog; do \
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

# Lint once, then the whole suite on each SQLAlchemy series, one after the other
# (`make test-sa21` or `make test-sa20` runs one of them alone).  Never in
# parallel, even under `make -j`: both suites use the same MariaDB server, whose
# XA branches are server-wide.
.NOTPARALLEL:
test: lint test-sa21 test-sa20

test-sa21: install
	@$(BIN)/python -c 'import sqlalchemy as sa; print("== SQLAlchemy", sa.__version__)'
	$(BIN)/pytest $(PYTEST_ARGS)

test-sa20: install-sa20
	@$(VENV_SA20)/bin/python -c 'import sqlalchemy as sa; print("== SQLAlchemy", sa.__version__)'
	$(VENV_SA20)/bin/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install --quiet --editable '.[testing,bench]'
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) $(VENV_SA20) build *.egg-info src/*.egg-info var
