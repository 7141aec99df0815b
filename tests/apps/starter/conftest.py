"""A project as Pylons' cookiecutter-starter makes it (sqlalchemy backend,
jinja2 templates), named ``starterapp``, with its own tests in ``tests/``.

It proves the drop-in claim of DESIGN.md: the only change from the generated
project is ``starterapp/models/__init__.py``, whose ``includeme`` is
``config.include("pyramid_dbrouter")`` and whose ``get_engine``,
``get_session_factory`` and ``get_tm_session`` are pyramid_dbrouter's.  The
template's fixtures in ``tests/conftest.py`` (``dbengine``, ``app``, ``tm``,
``dbsession``, ``testapp``, ...) override the project suite's fixtures of the
same names within ``tests/apps/starter/tests``.

``starterapp`` is not an installed distribution: this directory is put on
``sys.path`` so that the tests, alembic's ``env.py`` and ``testing.ini``
(``use = call:starterapp:main``) import it from any working directory.
"""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session", autouse=True)
def _remove_testing_sqlite():
    """The template's ``dbengine`` drops its tables; remove testing.ini's
    SQLite file too, so that a run leaves the work tree as it found it."""
    yield
    (HERE / "testing.sqlite").unlink(missing_ok=True)
