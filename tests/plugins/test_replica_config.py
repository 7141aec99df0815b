"""dbrouter_replica's configuration: every bad value fails at start-up,
naming the key, the value, and what would be accepted."""

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationConflictError, ConfigurationError
from replica_app import SECRET, make_app, sqlite_settings

from dbrouter_replica import get_replicas


def start(settings):
    return make_app(settings, create=False)


class TestBadSettings:
    @pytest.mark.parametrize(
        "extra, words",
        [
            (
                {"dbrouter.replica.replicas": "replica1 ghost"},
                [
                    "dbrouter.replica.replicas",
                    "'ghost'",
                    "not a configured engine",
                    "default, replica1",
                ],
            ),
            (
                {"dbrouter.replica.replicas": "default"},
                ["dbrouter.replica.replicas", "'default' is the primary itself"],
            ),
            (
                {"dbrouter.replica.primary": "ghost"},
                ["dbrouter.replica.primary", "'ghost'", "not a configured engine"],
            ),
            (
                {"dbrouter.replica.replicas": ""},
                ["dbrouter.replica.replicas is required"],
            ),
            (
                {"dbrouter.replica.strategy": "fastest"},
                ["dbrouter.replica.strategy", "'fastest'", "round_robin", "random"],
            ),
            (
                {"dbrouter.replica.pin_seconds": "soon"},
                ["dbrouter.replica.pin_seconds", "'soon'", "number of seconds"],
            ),
            (
                {"dbrouter.replica.pin_seconds": "2"},
                ["dbrouter.replica.pin_seconds", "'2'", "max_lag_seconds", "4"],
            ),
            (
                {"dbrouter.replica.max_lag_seconds": "-1"},
                ["dbrouter.replica.max_lag_seconds", "'-1'", "more than 0"],
            ),
            (
                {"dbrouter.replica.cooldown_seconds": "nan"},
                ["dbrouter.replica.cooldown_seconds", "'nan'"],
            ),
            (
                {"dbrouter.replica.cooldown_seconds": "0"},
                ["dbrouter.replica.cooldown_seconds", "'0'", "more than 0"],
            ),
            (
                {"dbrouter.replica.secret": "short"},
                ["dbrouter.replica.secret", "5 characters", "at least 16"],
            ),
            (
                {"dbrouter.replica.replica": "x"},
                [
                    "dbrouter.replica.replica",
                    "unknown setting",
                    "dbrouter.replica.replicas",
                ],
            ),
            (
                {"dbrouter.replica.replicas": "default = replica1\norders = replica1"},
                ["dbrouter.replica.replicas", "'replica1' is named twice"],
            ),
            (
                {"dbrouter.replica.replicas": "replica1 bad/name"},
                ["dbrouter.replica.replicas", "'bad/name' is not an engine name"],
            ),
        ],
    )
    def test_is_refused_at_start_up(self, tmp_path, extra, words):
        with pytest.raises(ConfigurationError) as info:
            start(sqlite_settings(tmp_path, **extra))
        for word in words:
            assert word in str(info.value)

    def test_a_missing_secret_is_refused_unless_pinning_is_off(self, tmp_path):
        settings = sqlite_settings(tmp_path)
        del settings["dbrouter.replica.secret"]
        with pytest.raises(ConfigurationError, match="secret is unset"):
            start(settings)
        settings["dbrouter.replica.pin_seconds"] = "0"
        start(settings)


def test_the_defaults(tmp_path):
    _app, registry = start(sqlite_settings(tmp_path, ("replica1", "replica2")))
    replicas = get_replicas(registry)
    assert replicas.groups == {"default": ["replica1", "replica2"]}
    assert replicas.pin.seconds == 5
    health = replicas.health
    assert (health.strategy, health.max_lag_seconds) == ("round_robin", 3)
    assert (health.cooldown_seconds, health.check_seconds) == (10, 1)


def test_several_primaries_each_with_replicas(tmp_path):
    settings = sqlite_settings(tmp_path)
    settings["sqlalchemy.orders.url"] = f"sqlite:///{tmp_path / 'orders.db'}"
    settings["sqlalchemy.orders_r1.url"] = f"sqlite:///{tmp_path / 'orders.db'}"
    settings["dbrouter.replica.replicas"] = """
        default = replica1
        orders = orders_r1
    """
    _app, registry = start(settings)
    assert get_replicas(registry).groups == {
        "default": ["replica1"],
        "orders": ["orders_r1"],
    }


def test_primary_setting_with_one_line_per_primary_is_refused(tmp_path):
    settings = sqlite_settings(tmp_path, **{"dbrouter.replica.primary": "main"})
    settings["dbrouter.replica.replicas"] = "main = replica1"
    with pytest.raises(ConfigurationError, match="dbrouter.replica.primary: 'main'"):
        start(settings)


def test_without_settings_the_directive_does_it(tmp_path):
    settings = sqlite_settings(tmp_path)
    del settings["dbrouter.replica.replicas"], settings["dbrouter.replica.secret"]
    config = Configurator(settings=settings)
    config.include("pyramid_dbrouter")
    config.include("dbrouter_replica")
    config.add_db_replicas(["replica1"], secret=SECRET, pin_seconds=10)
    config.commit()
    assert get_replicas(config.registry).pin.seconds == 10


def test_the_directive_names_its_arguments(tmp_path):
    config = Configurator(settings={"sqlalchemy.url": "sqlite://"})
    config.include("pyramid_dbrouter")
    config.include("dbrouter_replica")
    with pytest.raises(ConfigurationError, match=r"add_db_replicas\(strategy=...\)"):
        config.add_db_replicas(["r1"], strategy="nearest", secret=SECRET)


def test_called_twice_it_conflicts(tmp_path):
    settings = sqlite_settings(tmp_path)
    del settings["dbrouter.replica.replicas"], settings["dbrouter.replica.secret"]
    config = Configurator(settings=settings)
    config.include("pyramid_dbrouter")
    config.include("dbrouter_replica")
    config.add_db_replicas(["replica1"], pin_seconds=0)
    config.add_db_replicas(["replica1"], pin_seconds=0)
    with pytest.raises(ConfigurationConflictError):
        config.commit()


def test_including_twice_is_harmless(tmp_path):
    config = Configurator(settings=sqlite_settings(tmp_path))
    config.include("pyramid_dbrouter")
    config.include("dbrouter_replica")
    config.include("dbrouter_replica")
    config.commit()
    assert get_replicas(config.registry).groups == {"default": ["replica1"]}


def test_without_the_core_it_says_so():
    config = Configurator(settings={})
    config.include("dbrouter_replica")
    with pytest.raises(ConfigurationError, match="include\\('pyramid_dbrouter'\\)"):
        config.add_db_replicas(["r1"], pin_seconds=0)
