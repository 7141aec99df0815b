"""Table-per-shard models: ``TableModels(template, name).model(suffix)``."""

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    String,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Session,
    mapped_column,
    relationship,
)

from dbrouter_shard import TableModels, TableSuffixError


class EventColumns:
    """The template: columns every ``event_<suffix>`` table has."""

    id = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    body = mapped_column(String(50))


def test_a_suffix_is_mapped_once_and_cached():
    events = TableModels(EventColumns, "event")
    first = events.model("2024")
    assert events.model("2024") is first
    assert first.__table__.name == "event_2024"
    assert first.__name__ == "EventColumns_2024"
    assert events.suffixes() == ["2024"]


def test_fifty_threads_asking_for_twenty_suffixes_at_once():
    events = TableModels(EventColumns, "event")
    suffixes = [f"s{i}" for i in range(20)]
    start = threading.Barrier(50)
    seen, errors = [], []

    def ask(offset):
        start.wait()
        try:
            for i in range(40):
                seen.append(events.model(suffixes[(offset + i) % 20]))
        except Exception as exc:  # noqa: BLE001 - counted below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(seen)) == 20
    assert len(events.registry.mappers) == 20


def test_two_factories_with_one_class_name_never_collide():
    # the same template and names on two registries: no "already has a
    # primary mapper", no "multiple classes found" in either
    one = TableModels(EventColumns, "event").model("x")
    two = TableModels(EventColumns, "event").model("x")
    assert one is not two
    assert inspect(one).registry is not inspect(two).registry


class Base(DeclarativeBase):
    pass


events = TableModels(EventColumns, "event", metadata=Base.metadata)
Event2024 = events.model("2024")


class Attendee(Base):
    """Points at one table-per-shard model: a foreign-key target by name,
    and a relationship target by class."""

    __tablename__ = "attendees"
    id = mapped_column(Integer, primary_key=True)
    event_id = mapped_column(ForeignKey("event_2024.id"))
    event = relationship(Event2024)


def test_a_foreign_key_and_relationship_target(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'events.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Attendee(event=Event2024(body="launch")))
        session.commit()
        attendee = session.scalars(select(Attendee)).one()
        assert attendee.event.body == "launch"
        assert attendee.event_id == attendee.event.id
    engine.dispose()


def test_create_tables_for_given_suffixes(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'made.db'}")
    factory = TableModels(EventColumns, "log")
    factory.create_tables(engine, ["a", "b_2"])
    assert sorted(inspect(engine).get_table_names()) == ["log_a", "log_b_2"]
    engine.dispose()


@pytest.mark.parametrize(
    "suffix",
    ["", "A", "x-y", "x y", "x;drop table t", "ü", "x\n", None, 7, "a" * 60],
)
def test_a_bad_suffix_is_a_clear_error(suffix):
    with pytest.raises(TableSuffixError) as info:
        TableModels(EventColumns, "event").model(suffix)
    assert str(suffix)[:10].strip() in str(info.value)


def test_a_bad_name_is_refused_when_the_factory_is_made():
    with pytest.raises(TableSuffixError, match="'Event'"):
        TableModels(EventColumns, "Event")


@pytest.fixture(scope="module")
def counted_engine(tmp_path_factory):
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}")
    sent = []
    event.listen(engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    yield engine, sent
    engine.dispose()


@given(st.text(max_size=70))
def test_fuzzed_suffixes_no_invalid_name_accepted_no_sql_sent(counted_engine, suffix):
    engine, sent = counted_engine
    factory = TableModels(EventColumns, "fuzz")
    before = len(sent)
    valid = (
        suffix != ""
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in suffix)
        and len("fuzz_" + suffix) <= 63
    )
    try:
        made = factory.create_tables(engine, ["ok", suffix])
    except TableSuffixError:
        assert not valid
        assert len(sent) == before  # refused before any SQL, "ok" included
        assert factory.suffixes() == []
    else:
        assert valid
        assert made[suffix].__table__.name == f"fuzz_{suffix}"
