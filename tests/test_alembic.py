"""Alembic across engines: the template of ``python -m pyramid_dbrouter.alembic
init``, its ``env.py`` calling ``run_migrations``, and one set of revisions
run on three static engines and two tenants (tests/apps/migrate_app).

What exists where is checked directly, by inspecting each database file.
"""

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

pytest.importorskip("alembic")

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

REVISIONS = Path(__file__).with_name("alembic_revisions")
STATIC = ("default", "archive", "legacy")
TENANTS = ("acme", "globex")

INI = """\
[app:main]
use = call:migrate_app:main
sqlalchemy.url = sqlite:///%(here)s/default.sqlite
sqlalchemy.archive.url = sqlite:///%(here)s/archive.sqlite
sqlalchemy.legacy.url = sqlite:///%(here)s/legacy.sqlite
dbrouter.routers = migrate_app.AppRouter
dbrouter.metadata = migrate_app:Base
dbrouter.tenant.mode = sqlite-folder
dbrouter.tenant.root = %(here)s/albums
dbrouter.tenant.metadata = migrate_app:AlbumBase

[alembic]
script_location = %(here)s/migrations
"""

ENV_METADATA = (
    "    # metadata=[myapp.models.Base, myapp.models.AlbumBase],\n",
    "    metadata=['migrate_app:Base', 'migrate_app:AlbumBase'],\n",
)


@pytest.fixture
def project(tmp_path):
    """A project as the README's "Migrations" makes it: the template copied
    by ``init``, env.py told about the tenants' base, two revisions, and two
    tenants whose (empty) databases exist but hold no table yet."""
    from pyramid_dbrouter.alembic import init

    init(tmp_path / "migrations")
    env = tmp_path / "migrations" / "env.py"
    env.write_text(env.read_text().replace(*ENV_METADATA))
    for script in REVISIONS.glob("*.py"):
        shutil.copy(script, tmp_path / "migrations" / "versions")
    (tmp_path / "development.ini").write_text(INI)
    for key in TENANTS:
        (tmp_path / "albums" / key).mkdir(parents=True)
        sqlite3.connect(tmp_path / "albums" / key / "album.sqlite").close()
    return tmp_path


def path_of(project, name):
    if name.startswith("tenant:"):
        return project / "albums" / name.partition(":")[2] / "album.sqlite"
    return project / f"{name}.sqlite"


def tables(project):
    """``{engine: {table: [columns]}}``, read from each database file."""
    found = {}
    for name in [*STATIC, *(f"tenant:{key}" for key in TENANTS)]:
        engine = create_engine(f"sqlite:///{path_of(project, name)}")
        inspector = inspect(engine)
        found[name] = {
            table: [c["name"] for c in inspector.get_columns(table)]
            for table in inspector.get_table_names()
        }
        engine.dispose()
    return found


def versions(project):
    """``{engine: (version table, revision)}``."""
    found = {}
    for name, content in tables(project).items():
        (table,) = [t for t in content if t.startswith("alembic_version")]
        engine = create_engine(f"sqlite:///{path_of(project, name)}")
        with engine.connect() as conn:
            found[name] = (table, conn.scalar(text(f"SELECT * FROM {table}")))
        engine.dispose()
    return found


def config(project):
    return Config(str(project / "development.ini"))


AT_HEAD = {
    "default": {"users": ["id", "name"], "tags": ["id", "label"]},
    "archive": {"events": ["id", "what"], "tags": ["id", "label"]},
    "legacy": {"invoices": ["id", "total"], "tags": ["id", "label"]},
    "tenant:acme": {
        "photos": ["id", "title", "caption"],
        "comments": ["id", "photo_id", "body"],
    },
    "tenant:globex": {
        "photos": ["id", "title", "caption"],
        "comments": ["id", "photo_id", "body"],
    },
}


def without_versions(found):
    return {
        name: {t: c for t, c in content.items() if not t.startswith("alembic_version")}
        for name, content in found.items()
    }


def test_upgrade_runs_each_revision_on_every_engine_skipping_foreign_tables(project):
    command.upgrade(config(project), "head")

    assert without_versions(tables(project)) == AT_HEAD
    assert versions(project) == {
        "default": ("alembic_version", "0002"),
        "archive": ("alembic_version_archive", "0002"),
        "legacy": ("alembic_version_legacy", "0002"),
        "tenant:acme": ("alembic_version_tenant", "0002"),
        "tenant:globex": ("alembic_version_tenant", "0002"),
    }
    # op.bulk_insert on every engine holding tags; op.execute guarded by
    # engine_name() on default alone
    for name in STATIC:
        with sqlite3.connect(path_of(project, name)) as conn:
            assert conn.execute("SELECT label FROM tags").fetchall() == [("new",)]
    with sqlite3.connect(path_of(project, "default")) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("admin",)]


def test_upgrade_again_is_a_no_op_then_downgrade_undoes_it_everywhere(project):
    command.upgrade(config(project), "head")
    before = tables(project)

    # were anything run again, create_table would fail: the table exists
    command.upgrade(config(project), "head")
    assert tables(project) == before

    command.downgrade(config(project), "0001")
    at_0001 = without_versions(tables(project))
    assert at_0001["tenant:acme"] == {"photos": ["id", "title"]}
    assert at_0001["tenant:globex"] == {"photos": ["id", "title"]}
    assert at_0001["default"] == AT_HEAD["default"]
    assert {v[1] for v in versions(project).values()} == {"0001"}
    with sqlite3.connect(path_of(project, "default")) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)

    command.downgrade(config(project), "base")
    assert without_versions(tables(project)) == {name: {} for name in AT_HEAD}
    assert {v[1] for v in versions(project).values()} == {None}


def test_x_engines_migrates_only_the_engines_named(project):
    cfg = config(project)
    cfg.cmd_opts = type("Opts", (), {"x": ["engines=tenant:acme,archive"]})()
    command.upgrade(cfg, "head")

    found = without_versions(tables(project))
    assert found["tenant:acme"] == AT_HEAD["tenant:acme"]
    assert found["archive"] == AT_HEAD["archive"]
    assert found["default"] == found["legacy"] == found["tenant:globex"] == {}


def test_a_new_tenant_is_migrated_by_the_next_upgrade(project):
    command.upgrade(config(project), "head")
    (project / "albums" / "initech").mkdir()
    sqlite3.connect(project / "albums" / "initech" / "album.sqlite").close()

    command.upgrade(config(project), "head")

    engine = create_engine(f"sqlite:///{project / 'albums/initech/album.sqlite'}")
    assert set(inspect(engine).get_table_names()) == {
        "alembic_version_tenant",
        "comments",
        "photos",
    }
    engine.dispose()


def test_the_alembic_command_line_with_the_applications_ini(project):
    alembic = Path(sys.executable).with_name("alembic")
    ran = subprocess.run(
        [alembic, "-c", project / "development.ini", "upgrade", "head"],
        capture_output=True,
        text=True,
        cwd=project,
        env={"PYTHONPATH": str(Path(__file__).parent / "apps"), "PATH": ""},
    )
    assert ran.returncode == 0, ran.stderr
    assert without_versions(tables(project)) == AT_HEAD


def test_offline_sql_names_each_engine(project, capsys):
    command.upgrade(config(project), "head", sql=True)
    out = capsys.readouterr().out
    for name in [*STATIC, "tenant:acme", "tenant:globex"]:
        assert f"-- engine {name}" in out
    default, archive = out.split("-- engine archive")[0], out.split("-- engine ")[2]
    assert "CREATE TABLE users" in default and "CREATE TABLE events" not in default
    assert "CREATE TABLE events" in archive and "CREATE TABLE users" not in archive
    assert without_versions(tables(project)) == {name: {} for name in AT_HEAD}


def test_autogenerate_writes_one_script_for_every_engine(project):
    for script in (project / "migrations" / "versions").glob("*.py"):
        script.unlink()
    cfg = config(project)

    command.revision(cfg, message="initial", autogenerate=True, rev_id="auto1")

    (script,) = (project / "migrations" / "versions").glob("*auto1*.py")
    source = script.read_text()
    for table in ("users", "events", "invoices", "tags", "photos", "comments"):
        assert source.count(f"op.create_table('{table}'") == 1, table
        assert source.count(f"op.drop_table('{table}')") == 1, table
    command.upgrade(cfg, "head")
    assert without_versions(tables(project)) == AT_HEAD
    command.downgrade(cfg, "base")
    assert without_versions(tables(project)) == {name: {} for name in AT_HEAD}


def test_init_copies_the_template_and_refuses_a_folder_in_use(
    tmp_path, capsys, monkeypatch
):
    from pyramid_dbrouter.alembic import main

    monkeypatch.chdir(tmp_path)
    assert main(["init", "alembic"]) == 0
    assert sorted(p.name for p in (tmp_path / "alembic").iterdir()) == [
        "README",
        "env.py",
        "script.py.mako",
        "versions",
    ]
    assert "script_location = %(here)s/alembic\n" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["init", "alembic"])
    assert exc.value.code == 2


def test_version_tables():
    from pyramid_dbrouter.alembic import version_table

    assert version_table("default") == "alembic_version"
    assert version_table("archive") == "alembic_version_archive"
    assert version_table("shard-2") == "alembic_version_shard_2"
    assert version_table("tenant:acme") == "alembic_version_tenant"
