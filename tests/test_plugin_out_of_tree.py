"""A router plugin written out of tree, as a user would: its own package
(``dbrouter_labels``: Django's app-label router) with its own pyproject.toml,
built in a temporary folder, included with ``pyramid.includes`` in an INI
file, and routing an application's requests.

Once on ``sys.path`` (in this process), once installed with pip into a
throwaway virtualenv (in a subprocess).  The README's "Write your own router
plugin" shows exactly these files: the last test checks it.
"""

import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "dbrouter-labels"
version = "1.0"
dependencies = ["pyramid_dbrouter"]
"""

PLUGIN = '''\
"""dbrouter_labels: Django's app-label router as a pyramid_dbrouter plugin.

    pyramid.includes = dbrouter_labels
    dbrouter.labels.auth = auth_db

sends the models whose ``app_label`` is ``auth`` to the engine ``auth_db``:
their reads, their writes and their tables (auth_db holds no other); relations
stay among them.
"""

PREFIX = "dbrouter.labels."


class LabelRouter:
    def __init__(self, engines):
        self.engines = dict(engines)  # {app label: engine name}, never changed

    def engine_of(self, model):
        return self.engines.get(getattr(model, "app_label", None))

    def db_for_read(self, model, **hints):
        return self.engine_of(model)

    def db_for_write(self, model, **hints):
        return self.engine_of(model)

    def allow_relation(self, obj1, obj2, **hints):
        one, two = self.engine_of(type(obj1)), self.engine_of(type(obj2))
        return None if one is two is None else one == two

    def allow_migrate(self, db, model, **hints):
        engine = self.engine_of(model)
        if engine is not None:
            return db == engine
        return False if db in self.engines.values() else None  # theirs alone


def includeme(config):
    if not hasattr(config, "add_db_router"):
        config.include("pyramid_dbrouter")
    settings = config.get_settings()
    engines = {
        key[len(PREFIX) :]: value.strip()
        for key, value in settings.items()
        if key.startswith(PREFIX)
    }
    config.add_db_router(LabelRouter(engines), name="dbrouter_labels")
'''

# the application that uses it: knows nothing of the plugin but app_label
APP = """\
from pyramid.config import Configurator
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    app_label = "auth"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60))


class Album(Base):
    __tablename__ = "albums"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(60))


def add(request):
    model = {"accounts": Account, "albums": Album}[request.matchdict["table"]]
    obj = model(**{"name" if model is Account else "title": request.params["v"]})
    request.dbsession.add(obj)
    return {}


def count(request):
    model = {"accounts": Account, "albums": Album}[request.matchdict["table"]]
    return request.dbsession.scalar(select(func.count()).select_from(model))


def main(global_config, **settings):
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
        config.add_route("table", "/{table}")
        on_table = {"route_name": "table", "renderer": "json"}
        config.add_view(add, request_method="POST", **on_table)
        config.add_view(count, request_method="GET", **on_table)
    return config.make_wsgi_app()
"""

INI = """\
[app:main]
use = call:labelsapp:main
pyramid.includes = dbrouter_labels
sqlalchemy.url = sqlite:///%(here)s/main.sqlite
sqlalchemy.auth_db.url = sqlite:///%(here)s/auth.sqlite
dbrouter.metadata = labelsapp:Base
dbrouter.labels.auth = auth_db
"""

# what the application does with the plugin, run in this process or in the
# throwaway virtualenv; prints "ok"
CHECK = """\
import sqlite3, sys
import webtest
from pyramid.paster import get_app
from pyramid_dbrouter import get_engines, init_db

app = get_app(sys.argv[1])
names = [type(r).__name__ for r in app.registry["dbrouter"].routers]
assert names == ["LabelRouter"], names
assert init_db(app.registry) == {"default": ["albums"], "auth_db": ["accounts"]}
web = webtest.TestApp(app)
web.post("/accounts", {"v": "ada"})
web.post("/albums", {"v": "summer"})
assert web.get("/accounts").json == 1 and web.get("/albums").json == 1
files = {n: e.url.database for n, e in get_engines(app.registry).items()}
auth, main = sqlite3.connect(files["auth_db"]), sqlite3.connect(files["default"])
assert auth.execute("SELECT name FROM accounts").fetchall() == [("ada",)]
assert main.execute("SELECT title FROM albums").fetchall() == [("summer",)]
tables = {r[0] for r in main.execute("SELECT name FROM sqlite_master")}
assert "accounts" not in tables, tables
auth.close()
main.close()
print("ok")
"""


def build(folder):
    """The plugin's own project, and an application folder with its INI."""
    plugin = folder / "dbrouter-labels"
    (plugin / "src" / "dbrouter_labels").mkdir(parents=True)
    (plugin / "pyproject.toml").write_text(PYPROJECT)
    (plugin / "src" / "dbrouter_labels" / "__init__.py").write_text(PLUGIN)
    site = folder / "site"
    site.mkdir()
    (site / "labelsapp.py").write_text(APP)
    (site / "development.ini").write_text(INI)
    (site / "check.py").write_text(CHECK)
    return plugin, site


def test_on_the_path_it_is_included_by_pyramid_includes_and_routes(
    tmp_path, monkeypatch
):
    plugin, site = build(tmp_path)
    monkeypatch.syspath_prepend(str(plugin / "src"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(sys, "argv", ["check.py", str(site / "development.ini")])
    try:
        exec(compile(CHECK, "check.py", "exec"), {"__name__": "check"})
    finally:
        for name in ("dbrouter_labels", "labelsapp"):
            sys.modules.pop(name, None)


def test_installed_with_pip_into_a_virtualenv(tmp_path):
    plugin, site = build(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    # the throwaway virtualenv sees this suite's packages (pyramid_dbrouter,
    # setuptools, pip) through a .pth file; only the plugin is installed into it
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "suite.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index"]
        + ["--no-build-isolation", "--quiet", plugin],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert list(Path(purelib).glob("dbrouter_labels-1.0.dist-info"))
    ran = subprocess.run(
        [python, site / "check.py", site / "development.ini"],
        capture_output=True,
        text=True,
        cwd=site,
        timeout=300,
        env={"PYTHONPATH": str(site), "PATH": ""},
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "ok"
    # the suite's own environment was not touched
    assert not list(Path(ours).glob("dbrouter_labels*"))


def readme_section():
    text = README.read_text()
    start = text.index("## Write your own router plugin")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


@pytest.mark.parametrize(
    ("language", "source"),
    [("toml", PYPROJECT), ("python", PLUGIN), ("ini", INI)],
    ids=["pyproject.toml", "__init__.py", "development.ini"],
)
def test_the_readme_shows_exactly_this_package(language, source):
    blocks = re.findall(rf"```{language}\n(.*?)```", readme_section(), re.S)
    assert textwrap.dedent(source) in blocks
