"""The router chain: Django's protocol, with misspellings caught at start-up."""

import pytest
from pyramid.exceptions import ConfigurationError
from sqlalchemy import delete, insert, select, text, update

from pyramid_dbrouter import RouterAnswerError, RouterChain
from pyramid_dbrouter.routers import check_router


class Reads:
    def db_for_read(self, model, **hints):
        return "replica"


class Abstains:
    def db_for_read(self, model, **hints):
        return None

    def db_for_write(self, model, **hints):
        return None


class ReadsArchive:
    def db_for_read(self, model, **hints):
        return "archive"

    def allow_relation(self, obj1, obj2, **hints):
        return False

    def allow_migrate(self, db, model, **hints):
        return db == "archive"


class AllowsEverything:
    def allow_relation(self, obj1, obj2, **hints):
        return True

    def allow_migrate(self, db, model, **hints):
        return True


def test_the_first_answer_that_is_not_none_wins():
    chain = RouterChain([Abstains(), Reads(), ReadsArchive(), AllowsEverything()])
    assert chain.db_for_read(object) == "replica"
    assert chain.db_for_write(object) is None
    assert chain.allow_relation(1, 2) is False
    assert chain.allow_migrate("default", object) is False
    assert chain.allow_migrate("archive", object) is True
    later_first = RouterChain([ReadsArchive(), Reads()])
    assert later_first.db_for_read(object) == "archive"


def test_a_method_no_router_defines_is_no_opinion():
    chain = RouterChain([Abstains(), Reads(), check_router(Reads)])
    assert chain.db_for_read(object) == "replica"
    assert chain.db_for_write(object) is None
    assert chain.allow_relation(1, 2) is None
    assert chain.allow_migrate("default", object) is None


def test_a_list_means_fan_out_and_one_name_is_just_a_name():
    class Many:
        def db_for_read(self, model, **hints):
            return ["a", "b", "a"]

    class One:
        def db_for_read(self, model, **hints):
            return ("a",)

    assert RouterChain([Many()]).db_for_read(None) == ["a", "b"]
    assert RouterChain([One()]).db_for_read(None) == "a"


def test_a_class_is_instantiated():
    assert isinstance(check_router(Reads), Reads)


def test_a_misspelt_method_is_refused():
    class Typo:
        def db_for_reed(self, model, **hints):
            return "replica"

    with pytest.raises(
        ConfigurationError, match="'db_for_reed'.*did you mean 'db_for_read'"
    ):
        check_router(Typo())


def test_a_lookalike_method_is_refused_next_to_good_ones():
    class Extra:
        def db_for_write(self, model, **hints):
            return None

        def allow_relations(self, a, b, **hints):
            return True

    with pytest.raises(ConfigurationError, match="'allow_relations'"):
        check_router(Extra)


def test_a_router_without_any_method_is_refused():
    class Nothing:
        def route(self):
            pass

    with pytest.raises(ConfigurationError, match="defines none of the router methods"):
        check_router(Nothing())


def test_a_router_class_needing_arguments_is_explained():
    class Needs:
        def __init__(self, name):
            pass

        def db_for_read(self, model, **hints):
            return None

    with pytest.raises(ConfigurationError, match="pass an instance instead"):
        check_router(Needs)


@pytest.mark.parametrize("answer", [42, b"a", ["a", 3], [], {"a"}])
def test_answers_that_are_not_names_are_refused(answer):
    class Odd:
        def db_for_read(self, model, **hints):
            return answer

        def db_for_write(self, model, **hints):
            return answer

    chain = RouterChain([Odd()])
    with pytest.raises(RouterAnswerError, match="Odd.db_for_read returned"):
        chain.db_for_read(None)
    with pytest.raises(RouterAnswerError, match="expected an engine name"):
        chain.db_for_write(None)


class EveryEngine:
    """Writes to two engines: right for a bulk UPDATE or DELETE only."""

    def db_for_write(self, model, **hints):
        return ["a", "b", "a"]


def test_db_for_write_may_answer_a_list_for_a_bulk_update_or_delete():
    from sample import Album

    chain = RouterChain([EveryEngine()])
    for clause in (
        update(Album).values(title="x"),
        delete(Album),
        update(Album.__table__).values(title="x"),
        delete(Album.__table__).where(Album.__table__.c.id == 1),
    ):
        assert chain.db_for_write(Album, clause=clause) == ["a", "b"]


@pytest.mark.parametrize(
    "hints, what",
    [
        ({"instance": "album"}, "for a new Album;"),
        ({"clause": "insert"}, "for an INSERT into Album;"),
        ({"clause": "text"}, "for textual SQL;"),
        ({"clause": "select"}, "for a Select of Album;"),
        ({}, "for a write of Album with no statement"),
    ],
)
def test_a_list_for_anything_but_a_bulk_update_or_delete_is_refused(hints, what):
    from sample import Album

    made = {
        "album": lambda: Album(id=1, title="new"),
        "insert": lambda: insert(Album).values(id=1, title="new"),
        "text": lambda: text("UPDATE albums SET title = 'x'"),
        "select": lambda: select(Album),
    }
    hints = {key: made[value]() for key, value in hints.items()}
    with pytest.raises(RouterAnswerError) as info:
        RouterChain([EveryEngine()]).db_for_write(Album, **hints)
    message = str(info.value)
    assert message.startswith("router EveryEngine.db_for_write returned ['a', 'b'] ")
    assert what in message
    assert "a row is written to one engine" in message
    assert "only for a bulk UPDATE or DELETE" in message


def test_allow_answers_must_be_booleans():
    class Vague:
        def allow_relation(self, a, b, **hints):
            return "yes"

    with pytest.raises(RouterAnswerError, match="True, False or None"):
        RouterChain([Vague()]).allow_relation(1, 2)
