"""``dbrouter init-db CONFIG --all-tenants``: every album migrated, a status
line each, failures reported, and an exit status that says whether all
succeeded."""

import sqlite3
import textwrap

import pytest

from pyramid_dbrouter.cli import main

pytest_plugins = ("tenant_support",)


@pytest.fixture
def ini(tmp_path, album_root):
    """An ini file of the album application with three albums folders: two
    empty album files (no tables yet) and, with ``broken=True``, one whose
    file is not a database."""

    def write(broken=False):
        for album in ("a", "b", "c"):
            (album_root / album).mkdir()
            sqlite3.connect(album_root / album / "album.sqlite").close()
        if broken:
            (album_root / "b" / "album.sqlite").write_bytes(b"not a database" * 100)
        path = tmp_path / "app.ini"
        path.write_text(
            textwrap.dedent(
                f"""\
                [app:main]
                use = call:tenant_app:main
                sqlalchemy.url = sqlite:///{tmp_path}/shared.sqlite
                dbrouter.tenant.mode = sqlite-folder
                dbrouter.tenant.root = {album_root}
                """
            )
        )
        return str(path)

    return write


def photos_table(album_root, album):
    with sqlite3.connect(album_root / album / "album.sqlite") as conn:
        return conn.execute(
            "SELECT name FROM sqlite_master WHERE name = 'photos'"
        ).fetchall()


def test_all_tenants_migrates_every_album(ini, album_root, capsys):
    code = main(["init-db", ini(), "--all-tenants", "--jobs", "2"])
    out = capsys.readouterr().out
    assert code == 0
    for album in ("a", "b", "c"):
        assert f"tenant:{album}  created photos" in out
        assert photos_table(album_root, album) == [("photos",)]
    assert "all tenants: 3 of 3 done" in out
    # shared tables only on default; album tables never there
    assert "default  no tables (allow_migrate allows none)" in out


def test_a_second_run_finds_the_tables_there(ini, capsys):
    path = ini()
    main(["init-db", path, "--all-tenants"])
    capsys.readouterr()
    assert main(["init-db", path, "--all-tenants"]) == 0
    assert "tenant:a  already there: photos" in capsys.readouterr().out


def test_a_broken_album_is_reported_the_others_migrated_exit_1(ini, album_root, capsys):
    code = main(["init-db", ini(broken=True), "--all-tenants", "--continue-on-error"])
    out = capsys.readouterr().out
    assert code == 1
    assert "tenant:b  FAILED: DatabaseError: file is not a database" in out
    assert photos_table(album_root, "a") == [("photos",)]
    assert photos_table(album_root, "c") == [("photos",)]
    assert "all tenants: 2 of 3 done, 1 failed (tenant:b)" in out


def test_without_continue_on_error_it_stops_after_a_failure(ini, album_root, capsys):
    code = main(["init-db", ini(broken=True), "--all-tenants"])  # one job: a, b, c
    out = capsys.readouterr().out
    assert code == 1
    assert "tenant:b  FAILED" in out
    assert "tenant:c" not in out
    assert photos_table(album_root, "c") == []
    assert "1 not attempted (no --continue-on-error)" in out


def test_jobs_must_be_a_positive_number(ini, capsys):
    assert main(["init-db", ini(), "--all-tenants", "--jobs", "0"]) == 2
    assert "'0' is not a positive whole number" in capsys.readouterr().err
