"""Settings are checked once, at start-up, with errors that name the key."""

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError

from pyramid_dbrouter.settings import mask_url, parse_settings


def start(settings):
    """Start an application the way ``pserve`` would, and return its registry."""
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
    return config.registry


def test_engines_from_sqlalchemy_keys():
    parsed = parse_settings(
        {
            "sqlalchemy.url": "sqlite://",
            "sqlalchemy.pool_pre_ping": "true",
            "sqlalchemy.auth.url": "sqlite:///auth.db",
            "sqlalchemy.auth.echo": "false",
        }
    )
    assert sorted(parsed.engines) == ["auth", "default"]
    assert parsed.engines["default"].options == {"pool_pre_ping": "true"}
    assert parsed.engines["auth"].options == {"echo": "false"}
    assert (parsed.twophase, parsed.coordinator, parsed.xid_prefix) == (
        "auto",
        "default",
        "dbr",
    )


def test_engine_options_are_coerced_by_the_dialect():
    registry = start({"sqlalchemy.url": "sqlite://", "sqlalchemy.echo": "true"})
    assert registry["dbrouter"].engines.get("default").echo is True


@pytest.mark.parametrize(
    "settings, message",
    [
        ({}, "sqlalchemy.url is required"),
        (
            {"sqlalchemy.url": "not a url"},
            "sqlalchemy.url: 'not a url' is not a database URL",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "sqlalchemy.x.url": "nosuchdb://h/d"},
            "sqlalchemy.x.url: .*unknown SQLAlchemy dialect 'nosuchdb'",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "sqlalchemy.ghost.echo": "true"},
            "sqlalchemy.ghost.echo: there is no engine named 'ghost'",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "sqlalchemy.bad name!.url": "sqlite://"},
            "not a valid engine name",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "dbrouter.twophase": "sometimes"},
            "dbrouter.twophase: 'sometimes' is not one of auto, off",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "dbrouter.xid_prefix": "9lives"},
            "dbrouter.xid_prefix: '9lives' must start with a letter",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "dbrouter.max_dynamic_engines": "lots"},
            "dbrouter.max_dynamic_engines: 'lots' is not a positive whole number",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "dbrouter.twophse": "off"},
            "dbrouter.twophse: unknown setting; known dbrouter settings: .*twophase",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "dbrouter.coordinator": "ledger"},
            "dbrouter.coordinator: 'ledger' is not a configured engine",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "sqlalchemy.pool_sise": "5"},
            "invalid engine option for engine 'default'.*pool_sise",
        ),
        (
            {"sqlalchemy.url": "sqlite://", "dbrouter.metadata": "sample.NoSuchBase"},
            "dbrouter.metadata: cannot import 'sample.NoSuchBase'",
        ),
    ],
)
def test_bad_settings_fail_at_start_up_naming_the_key(settings, message):
    with pytest.raises(ConfigurationError, match=message):
        start(settings)


def test_passwords_never_appear_in_errors():
    settings = {
        "sqlalchemy.url": "postgresql+psycopg://app:CANARY-pw@127.0.0.1:1/x",
        "sqlalchemy.pool_sise": "5",
    }
    with pytest.raises(ConfigurationError) as info:
        start(settings)
    assert "CANARY" not in str(info.value)
    assert "***" in str(info.value)


def test_mask_url_hides_passwords_even_in_bad_urls():
    assert "secret" not in mask_url("postgresql://u:secret@h/d")
    assert "secret" not in mask_url("weird://u:secret@")


def test_start_up_never_connects():
    # a server that is not there: building the application must still work
    registry = start({"sqlalchemy.url": "postgresql+psycopg://u:p@127.0.0.1:1/none"})
    assert registry["dbsession_factory"] is not None


def test_a_dbengine_setting_stands_in_for_default():
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    registry = start({"dbengine": engine})
    assert registry["dbrouter"].engines.get("default") is engine


def test_mask_url_hides_passwords_given_as_query_parameters():
    masked = mask_url("postgresql+psycopg://u@h/db?password=CANARY&sslmode=require")
    assert "CANARY" not in masked and "sslmode=require" in masked
