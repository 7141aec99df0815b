"""Fixtures shared by the suites: SQLite engines in files of tmp_path.

Two plugins add theirs: ``server_fixtures`` (real PostgreSQL clusters and
MariaDB databases) and ``twophase_fixtures`` (the two-phase and recovery
suites).  The test applications are in tests/apps, on the Python path by
pyproject.toml's ``pythonpath``.
"""

import pytest
from sqlalchemy import create_engine

from sample import Base

pytest_plugins = ("server_fixtures", "twophase_fixtures")

# a user's project with its own pytest.ini and top-level conftest (which opts in
# to pyramid_dbrouter.testing): test_testing.py runs it as its own pytest session
collect_ignore = ["apps/notes"]


@pytest.fixture
def sqlite_engines(tmp_path):
    """``make(*names)`` -> ``{name: Engine}``, one SQLite file each, tables made."""
    made = []

    def make(*names, create=True):
        engines = {}
        for name in names:
            engine = create_engine(f"sqlite:///{tmp_path / name}.db")
            if create:
                Base.metadata.create_all(engine)
            engines[name] = engine
            made.append(engine)
        return engines

    yield make
    for engine in made:
        engine.dispose()


@pytest.fixture
def db_path(tmp_path):
    """The path of the SQLite file of an engine made by ``sqlite_engines``."""
    return lambda name: str(tmp_path / f"{name}.db")
