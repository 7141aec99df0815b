"""dbrouter_archive's settings and directive: checked at start-up, errors
naming the key, the value and what is accepted; twice is a conflict."""

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationConflictError, ConfigurationError

from dbrouter_archive import ArchiveRouter, get_archive


def configure(tmp_path, **settings):
    base = {
        "sqlalchemy.url": f"sqlite:///{tmp_path}/hot.sqlite",
        "sqlalchemy.archive.url": f"sqlite:///{tmp_path}/archive.sqlite",
    }
    config = Configurator(settings={**base, **settings})
    config.include("pyramid_dbrouter")
    config.include("dbrouter_archive")
    return config


def test_settings_make_the_archive(tmp_path):
    config = configure(
        tmp_path,
        **{
            "dbrouter.archive.archive": "archive",
            "dbrouter.archive.models": "archive_app:Order",
            "dbrouter.archive.archive_writes": "refuse",
        },
    )
    config.commit()
    archive = get_archive(config.registry)
    from archive_app import Order, OrderLine

    assert (archive.hot, archive.archive, archive.archive_writes) == (
        "default",
        "archive",
        "refuse",
    )
    assert archive.covers(Order) and archive.covers(OrderLine)  # children follow
    assert not archive.covers(None)
    assert config.registry["dbsession_factory"].kw["fanout_unique"] == "first"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"dbrouter.archive.hot": "default"}, "dbrouter.archive.archive is required"),
        ({"dbrouter.archive.archiv": "x"}, "unknown setting"),
        (
            {
                "dbrouter.archive.archive": "archive",
                "dbrouter.archive.archive_writes": "x",
            },
            "'x' is not accepted; use origin",
        ),
        ({"dbrouter.archive.archive": "a b"}, "'a b' is not an engine name"),
        ({"dbrouter.archive.archive": "default"}, "is also the hot engine"),
        (
            {"dbrouter.archive.archive": "archive", "dbrouter.archive.models": "nope"},
            "'nope' is not a dotted name",
        ),
        (
            {
                "dbrouter.archive.archive": "archive",
                "dbrouter.archive.models": "archive_app:make_app",
            },
            "not a mapped class",
        ),
        (
            {"dbrouter.archive.archive": "archive", "dbrouter.archive.models": "x.y:Z"},
            "cannot import 'x.y:Z'",
        ),
    ],
)
def test_bad_settings_are_named(tmp_path, settings, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        configure(tmp_path, **settings).commit()
    assert "dbrouter.archive." in str(info.value)


def test_an_unknown_engine_fails_at_start_up(tmp_path):
    config = configure(tmp_path, **{"dbrouter.archive.archive": "cold"})
    with pytest.raises(ConfigurationError, match="'cold' is not a configured engine"):
        config.commit()


def test_the_directive_called_twice_conflicts(tmp_path):
    config = configure(tmp_path)
    config.add_db_archive("archive")
    config.add_db_archive("archive")
    with pytest.raises(ConfigurationConflictError):
        config.commit()


def test_without_settings_nothing_is_archived(tmp_path):
    config = configure(tmp_path)
    config.commit()
    with pytest.raises(LookupError, match="no archive configured"):
        get_archive(config.registry)
    config.add_db_archive("archive", models=["archive_app:Order"])
    config.commit()
    assert repr(get_archive(config.registry)).startswith("<Archive hot='default'")
    assert isinstance(ArchiveRouter(get_archive(config.registry)), ArchiveRouter)
