"""The pytest plugin ``pyramid_dbrouter.testing``, proved by a user's project
(tests/apps/notes: an application, its testing.ini, a top-level conftest
opting in, and a suite using nothing but the plugin's fixtures), run as its
own pytest session in a copy of the project."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).parent / "apps" / "notes"


def run_pytest(folder, *args):
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return ran.returncode, ran.stdout + ran.stderr


@pytest.fixture
def project(tmp_path):
    copy = tmp_path / "notes"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_the_users_suite_passes_rows_rolled_back_on_every_engine(project):
    code, out = run_pytest(project, "-vv")
    assert code == 0, out
    assert "::test_1_writes_on_every_engine PASSED" in out
    assert "::test_2_they_are_gone_on_every_engine PASSED" in out
    assert "10 passed" in out
    # the databases the session made, each with its tables and no row
    assert (project / "default.sqlite").exists()
    assert (project / "archive.sqlite").exists()
    assert (project / "albums" / "acme" / "album.sqlite").exists()


def test_the_second_test_fails_if_the_first_commits(project):
    """The proof proves something: with a ``testapp`` whose requests commit
    on their own (no shared doomed transaction), test_2 finds their rows."""
    (project / "conftest.py").write_text(
        (project / "conftest.py").read_text()
        + """

@pytest.fixture
def testapp(app, dbsession):
    import webtest

    return webtest.TestApp(app, extra_environ={"HTTP_HOST": "example.com"})
"""
    )
    code, out = run_pytest(project, "tests/test_rollback.py")
    assert code == 1, out
    assert "FAILED tests/test_rollback.py::test_2_they_are_gone_on_every_engine" in out


def test_the_ini_file_can_be_given_on_the_command_line(project):
    other = project / "other.ini"
    other.write_text(
        (project / "testing.ini")
        .read_text()
        .replace("%(here)s/default.sqlite", "%(here)s/other-default.sqlite")
    )
    code, out = run_pytest(
        project, "--dbrouter-ini", str(other), "tests/test_rollback.py"
    )
    assert code == 0, out
    assert (project / "other-default.sqlite").exists()
    assert not (project / "default.sqlite").exists()


def test_the_plugin_is_not_loaded_unless_asked_for(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_x(dbsession):\n    pass\n")
    code, out = run_pytest(tmp_path)
    assert code == 1
    assert "fixture 'dbsession' not found" in out
    code, out = run_pytest(tmp_path, "-p", "pyramid_dbrouter.testing", "--co")
    assert code == 0, out
