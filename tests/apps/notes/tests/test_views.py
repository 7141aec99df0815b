"""Views called with the lighter fixtures, and the engines marker."""

import pytest
from notes_app import ArchivedNote, Note, add_note, list_notes
from sqlalchemy import select

from pyramid_dbrouter.testing import EngineNotAllowed


def test_a_view_with_dummy_request(dummy_request, dbsession):
    dbsession.add(Note(text="from the test"))
    assert list_notes(dummy_request) == ["from the test"]


def test_a_view_with_app_request(app_request):
    app_request.GET["text"] = "posted"
    add_note(app_request)
    assert list_notes(app_request) == ["posted"]


def test_a_request_sees_the_tests_rows_and_the_test_sees_the_requests(
    testapp, dbsession
):
    dbsession.add(Note(text="seeded"))
    testapp.post("/notes", {"text": "posted"})
    assert testapp.get("/notes").json == ["seeded", "posted"]
    assert dbsession.scalars(select(Note.text)).all() == ["seeded", "posted"]


def test_an_unknown_tenant_is_a_404(testapp):
    testapp.get("/albums/nobody/photos", status=404)


@pytest.mark.dbrouter_engines("default")
def test_the_marker_allows_the_engines_it_names(dbsession):
    dbsession.add(Note(text="fine"))
    dbsession.flush()


@pytest.mark.dbrouter_engines("default")
def test_the_marker_refuses_the_others(dbsession):
    dbsession.add(ArchivedNote(text="not here"))
    with pytest.raises(EngineNotAllowed, match="'archive'"):
        dbsession.flush()


@pytest.mark.dbrouter_engines("tenant:*")
def test_the_marker_takes_patterns(testapp):
    testapp.post("/albums/acme/photos", {"title": "dusk"})
    with pytest.raises(EngineNotAllowed, match="'default'"):
        testapp.get("/notes")


@pytest.mark.dbrouter_engines()
def test_an_empty_marker_allows_no_engine(testapp):
    with pytest.raises(EngineNotAllowed):
        testapp.get("/notes")
