"""The ``dbrouter`` command line: ``show``, ``show --explain`` and ``init-db``.

Each test writes the ini file of the little application in ``cli_app`` into
``tmp_path`` (three engines: ``default``, ``auth`` and ``archive``; two
routers; three models) and runs ``main([...])`` in this process, except one
that runs the installed ``dbrouter`` script.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy

from pyramid_dbrouter.cli import main

#: the test applications, cli_app among them
APPS = Path(__file__).parent / "apps"
CANARY = "CANARY-SECRET"
#: PostgreSQL on a port where nothing listens: any connection attempt fails
DOWN = f"postgresql+psycopg://u:{CANARY}@127.0.0.1:1/x"
ROUTERS = "cli_app.routers.PhotoRouter\n    cli_app.routers.ArchiveOnlyPhotos"


@pytest.fixture
def ini(tmp_path):
    """``ini(**settings)`` writes an ini file for ``cli_app`` and returns its
    path; keyword arguments (dots spelt ``__``) add, replace or, with None,
    remove settings."""

    def write(app="main", **changes):
        settings = {
            "sqlalchemy.url": f"sqlite:///{tmp_path}/default.db",
            "sqlalchemy.auth.url": f"sqlite:///{tmp_path}/auth.db",
            "sqlalchemy.archive.url": f"sqlite:///{tmp_path}/archive.db",
            "dbrouter.routers": ROUTERS,
            "dbrouter.metadata": "cli_app.models:Base",
        }
        settings.update({k.replace("__", "."): v for k, v in changes.items()})
        lines = ["[app:main]", f"use = call:cli_app:{app}"]
        lines += [f"{k} = {v}" for k, v in settings.items() if v is not None]
        path = tmp_path / "app.ini"
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    return write


@pytest.fixture
def dbrouter(capsys):
    """``dbrouter(*argv)`` -> ``(exit status, stdout, stderr)``."""

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def tables(path):
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        return sorted(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# -- show --------------------------------------------------------------------------


def test_show_lists_each_engine_with_its_dialect_and_masked_url(
    ini, dbrouter, tmp_path
):
    code, out, err = dbrouter("show", ini(sqlalchemy__auth__url=DOWN))

    assert (code, err) == (0, "")
    assert f"default  sqlite      sqlite:///{tmp_path}/default.db" in out
    assert f"archive  sqlite      sqlite:///{tmp_path}/archive.db" in out
    assert "auth     postgresql  postgresql+psycopg://u:***@127.0.0.1:1/x" in out
    assert CANARY not in out


def test_show_lists_routers_in_order_and_the_transaction_settings(ini, dbrouter):
    code, out, _err = dbrouter("show", ini(dbrouter__xid_prefix="photos"))

    assert code == 0
    assert (
        "routers, asked in this order:\n"
        "  1. cli_app.routers.PhotoRouter\n"
        "  2. cli_app.routers.ArchiveOnlyPhotos\n"
    ) in out
    assert "twophase     auto (two-phase commit when two or more engines wrote)" in out
    assert "coordinator  default" in out
    assert "xid prefix   photos" in out
    assert "init-db metadata: cli_app.models:Base" in out


def test_show_says_when_there_are_no_routers(ini, dbrouter):
    _code, out, _err = dbrouter("show", ini(dbrouter__routers=None))

    assert "routers: none (models go to their __bind_key__, or to default)" in out


def test_show_lists_engine_factories_without_making_an_engine(ini, dbrouter, tmp_path):
    path = ini(cli_app__tenants="true", cli_app__tenant_root=tmp_path / "tenants")
    code, out, _err = dbrouter("show", path)

    assert code == 0
    assert "engines made on demand (engine factories):" in out
    assert "  tenant:KEY  cli_app.tenant_url" in out


def test_show_needs_no_database_and_never_prints_a_password(ini, dbrouter):
    path = ini(
        sqlalchemy__url=DOWN,
        sqlalchemy__auth__url=f"postgresql+psycopg://u@127.0.0.1:1/y?password={CANARY}",
        sqlalchemy__archive__url=DOWN.replace("/x", "/archive"),
    )
    code, out, err = dbrouter("show", path, "--explain", "cli_app.models:Photo")

    assert (code, err) == (0, "")
    assert "postgresql+psycopg://u:***@127.0.0.1:1/x" in out
    assert "postgresql+psycopg://u@127.0.0.1:1/y?password=***" in out
    assert CANARY not in out


# -- show --explain ------------------------------------------------------------------


def explanation(out):
    return out.split("\n\n", 1)[1]


def test_explain_a_model_with_a_bind_key(ini, dbrouter):
    code, out, _err = dbrouter("show", ini(), "--explain", "cli_app.models:User")

    assert code == 0
    assert explanation(out) == (
        "cli_app.models.User (table users):\n"
        "  reads   auth  <- __bind_key__ of User\n"
        "  writes  auth  <- __bind_key__ of User\n"
        "  (using_bind() overrides both; a loaded object stays with its engine)\n"
        "  its table, on each engine (allow_migrate, as init-db decides):\n"
        "    default  no   <- __bind_key__ of User = auth\n"
        "    archive  no   <- router cli_app.routers.ArchiveOnlyPhotos\n"
        "    auth     yes  <- __bind_key__ of User = auth\n"
    )


def test_explain_a_model_routed_by_a_router_with_a_fan_out_read(ini, dbrouter):
    code, out, _err = dbrouter("show", ini(), "--explain", "cli_app.models.Photo")

    assert code == 0
    assert (
        "  reads   fan-out to default, archive  <- router cli_app.routers.PhotoRouter\n"
        "  writes  default                      <- router cli_app.routers.PhotoRouter\n"
    ) in explanation(out)
    assert "    archive  yes  <- router cli_app.routers.ArchiveOnlyPhotos\n" in out


def test_explain_a_model_every_router_abstains_on(ini, dbrouter):
    code, out, _err = dbrouter("show", ini(), "--explain", "cli_app.models:Tag")

    assert code == 0
    assert (
        "  reads   default  <- default: every router abstained\n"
        "  writes  default  <- default: every router abstained\n"
    ) in explanation(out)
    assert "    default  yes  <- no router has an opinion: every engine\n" in out
    assert "    archive  no   <- router cli_app.routers.ArchiveOnlyPhotos\n" in out


def test_explain_flags_a_router_answer_that_names_no_engine(ini, dbrouter):
    path = ini(dbrouter__routers="cli_app.routers.TypoRouter")
    code, out, _err = dbrouter("show", path, "--explain", "cli_app.models:Tag")

    assert code == 0
    assert (
        "  writes  archvie (!! not configured: archvie)  "
        "<- router cli_app.routers.TypoRouter\n"
    ) in out


@pytest.mark.parametrize("model", ["User", "Photo", "Tag"])
def test_explain_predicts_where_init_db_creates_the_table(
    ini, dbrouter, tmp_path, model
):
    path = ini()
    _code, out, _err = dbrouter("show", path, "--explain", f"cli_app.models:{model}")
    dbrouter("init-db", path)

    table = f"{model.lower()}s"
    for engine in ("default", "archive", "auth"):
        predicted = f"    {engine.ljust(7)}  yes" in out
        assert predicted == (table in tables(tmp_path / f"{engine}.db")), engine


def test_explain_names_the_mapped_classes_when_given_something_else(ini, dbrouter):
    code, out, err = dbrouter("show", ini(), "--explain", "cli_app.routers:PhotoRouter")

    assert (code, out) == (2, "")
    assert err == (
        "dbrouter show: error: --explain 'cli_app.routers:PhotoRouter': "
        "<class 'cli_app.routers.PhotoRouter'> is not a mapped class; the mapped "
        "classes of dbrouter.metadata are cli_app.models.Photo, cli_app.models.Tag, "
        "cli_app.models.User\n"
    )


def test_explain_an_unimportable_model(ini, dbrouter):
    code, out, err = dbrouter("show", ini(), "--explain", "cli_app.nowhere:Photo")

    assert (code, out) == (2, "")
    assert err == (
        "dbrouter show: error: --explain 'cli_app.nowhere:Photo': cannot import it "
        "(No module named 'cli_app.nowhere'); name a mapped class as "
        "package.module:Class or package.module.Class\n"
    )


# -- init-db -------------------------------------------------------------------------


def test_init_db_creates_tables_only_where_allow_migrate_allows(
    ini, dbrouter, tmp_path
):
    code, out, err = dbrouter("init-db", ini())

    assert (code, err) == (0, "")
    assert out == (
        "default  created photos, tags\n"
        "archive  created photos\n"
        "auth     created photos, tags, users\n"
    )
    assert tables(tmp_path / "default.db") == ["photos", "tags"]
    assert tables(tmp_path / "archive.db") == ["photos"]
    assert tables(tmp_path / "auth.db") == ["photos", "tags", "users"]


def test_init_db_twice_leaves_existing_tables_alone(ini, dbrouter):
    path = ini()
    dbrouter("init-db", path)
    code, out, _err = dbrouter("init-db", path)

    assert code == 0
    assert "archive  already there: photos\n" in out


def test_init_db_without_dbrouter_metadata_says_what_to_set(ini, dbrouter):
    path = ini(dbrouter__metadata=None)
    code, out, err = dbrouter("init-db", path)

    assert (code, out) == (2, "")
    assert err == (
        f"dbrouter init-db: error: {path!r} has no dbrouter.metadata setting: "
        "init-db needs the dotted name of the MetaData or declarative base whose "
        "tables it creates, e.g. dbrouter.metadata = myapp.models:Base\n"
    )


def test_init_db_names_the_engine_that_is_down_and_not_its_password(
    ini, dbrouter, tmp_path
):
    code, out, err = dbrouter("init-db", ini(sqlalchemy__auth__url=DOWN))

    assert (code, out) == (1, "")
    assert err.startswith(
        "dbrouter init-db: error: engine auth "
        "(postgresql+psycopg://u:***@127.0.0.1:1/x): connection failed:"
    )
    assert err.count("\n") == 1
    assert CANARY not in err
    assert tables(tmp_path / "default.db") == []  # nothing created anywhere


# -- bad input -----------------------------------------------------------------------


def test_a_missing_ini_file(dbrouter, tmp_path):
    code, out, err = dbrouter("show", str(tmp_path / "nowhere.ini"))

    assert (code, out) == (2, "")
    assert err == (
        f"dbrouter show: error: cannot read {str(tmp_path / 'nowhere.ini')!r}: "
        "No such file or directory\n"
    )


def test_an_ini_file_that_cannot_be_read(dbrouter, tmp_path):
    path = tmp_path / "folder.ini"
    path.mkdir()
    code, out, err = dbrouter("init-db", str(path))

    assert (code, out) == (2, "")
    assert (
        err == f"dbrouter init-db: error: cannot read {str(path)!r}: Is a directory\n"
    )


def test_an_ini_file_without_the_app_section(dbrouter, tmp_path):
    path = tmp_path / "other.ini"
    path.write_text("[app:other]\nuse = call:cli_app:main\n")
    code, _out, err = dbrouter("show", str(path))

    assert code == 2
    assert err.startswith(
        f"dbrouter show: error: cannot load the application from {str(path)!r}: "
        "No section 'main'"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"dbrouter__twophase": "maybe"},
            "dbrouter.twophase: 'maybe' is not one of auto, off",
        ),
        (
            {"dbrouter__coordinator": "nowhere"},
            "dbrouter.coordinator: 'nowhere' is not a configured engine; "
            "configured engines: default, archive, auth",
        ),
        (
            {"sqlalchemy__auth__url": f"nosuchdb://u:{CANARY}@h/x"},
            "sqlalchemy.auth.url: 'nosuchdb://u:***@h/x' names an unknown "
            "SQLAlchemy dialect 'nosuchdb'",
        ),
    ],
    ids=["bad-value", "raised-in-an-action", "url-with-password"],
)
def test_a_configuration_error_is_one_line_naming_the_setting(
    ini, dbrouter, changes, message
):
    path = ini(**changes)
    code, out, err = dbrouter("show", path)

    assert (code, out) == (2, "")
    assert err == (
        f"dbrouter show: error: cannot load the application from {path!r}: "
        f"ConfigurationError: {message}\n"
    )


def test_an_application_that_does_not_include_pyramid_dbrouter(ini, dbrouter):
    path = ini(app="without_dbrouter")
    code, _out, err = dbrouter("show", path)

    assert code == 2
    assert err == (
        f"dbrouter show: error: the application of {path!r} does not use "
        'pyramid_dbrouter; its main() should call config.include("pyramid_dbrouter")\n'
    )


def test_help_lists_the_commands(dbrouter):
    code, out, _err = dbrouter("--help")

    assert code == 0
    assert out.startswith("usage: dbrouter [-h] COMMAND ...")
    assert "    show " in out
    assert "    init-db " in out


def test_a_command_is_required(dbrouter):
    code, _out, err = dbrouter()

    assert code == 2
    assert "the following arguments are required: COMMAND" in err


# -- the installed script ------------------------------------------------------------


def test_the_installed_script_shows_with_every_database_down(ini, tmp_path):
    # the script installed next to this Python, not another one on PATH
    script = Path(sys.executable).with_name("dbrouter")
    if not script.exists():
        script = shutil.which("dbrouter")
    path = ini(sqlalchemy__url=DOWN, sqlalchemy__auth__url=DOWN)
    env = dict(os.environ, PYTHONPATH=str(APPS))

    done = subprocess.run(
        [str(script), "show", path, "--explain", "cli_app.models:User"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert (
        "default  postgresql  postgresql+psycopg://u:***@127.0.0.1:1/x" in done.stdout
    )
    assert "  reads   auth  <- __bind_key__" in done.stdout
    assert CANARY not in done.stdout
