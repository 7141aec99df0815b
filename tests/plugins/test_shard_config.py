"""dbrouter_shard's configuration: every bad value fails at start-up,
naming the key, the value, and what would be accepted."""

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationConflictError, ConfigurationError
from shard_models import make_app, sqlite_settings


def start(settings):
    return make_app(settings, create=False)


def shard_of_even(key):
    """A dotted-callable strategy for the tests: even keys on shard0."""
    return "shard0" if key % 2 == 0 else "shard1"


class TestBadSettings:
    @pytest.mark.parametrize(
        "extra, words",
        [
            (
                {"dbrouter.shard.strategy": "random"},
                ["dbrouter.shard.strategy", "'random'", "modulo", "hash", "dotted"],
            ),
            (
                {"dbrouter.shard.strategy": "nowhere.at_all:shard_of"},
                ["dbrouter.shard.strategy", "nowhere.at_all:shard_of", "cannot import"],
            ),
            (
                {"dbrouter.shard.strategy": "math:pi"},
                ["dbrouter.shard.strategy", "not a callable"],
            ),
            (
                {"dbrouter.shard.buckets": "0"},
                ["dbrouter.shard.buckets", "'0'", "from the number of shards (2)"],
            ),
            ({"dbrouter.shard.buckets": "many"}, ["dbrouter.shard.buckets", "'many'"]),
            ({"dbrouter.shard.buckets": "1"}, ["dbrouter.shard.buckets", "'1'"]),
            ({"dbrouter.shard.buckets": "5000"}, ["1024"]),
            (
                {"dbrouter.shard.on_missing_key": "ignore"},
                ["dbrouter.shard.on_missing_key", "'ignore'", "fanout", "error"],
            ),
            ({"dbrouter.shard.id_node": "16"}, ["dbrouter.shard.id_node", "0 to 15"]),
            (
                {"dbrouter.shard.shard": "x"},
                ["dbrouter.shard.shard", "unknown setting"],
            ),
        ],
    )
    def test_is_refused_at_start_up(self, tmp_path, extra, words):
        with pytest.raises(ConfigurationError) as info:
            start(sqlite_settings(tmp_path, 2, **extra))
        for word in words:
            assert word in str(info.value)

    def test_an_unknown_shard_engine(self, tmp_path):
        settings = sqlite_settings(tmp_path, 2)
        settings["dbrouter.shard.shards"] = "shard0 shard1 shard7"
        with pytest.raises(ConfigurationError) as info:
            start(settings)
        message = str(info.value)
        assert "dbrouter.shard.shards" in message and "'shard7'" in message
        assert "configured engines: default, shard0, shard1" in message

    def test_a_shard_named_twice_or_badly(self, tmp_path):
        settings = sqlite_settings(tmp_path, 2)
        settings["dbrouter.shard.shards"] = "shard0 shard0"
        with pytest.raises(ConfigurationError, match="named twice"):
            start(settings)
        settings["dbrouter.shard.shards"] = "shard0 'shard1'"
        with pytest.raises(ConfigurationError, match="not an engine name"):
            start(settings)

    def test_settings_without_shards(self, tmp_path):
        settings = sqlite_settings(tmp_path, 2)
        del settings["dbrouter.shard.shards"]
        settings["dbrouter.shard.strategy"] = "hash"
        with pytest.raises(
            ConfigurationError, match="dbrouter.shard.shards is required"
        ):
            start(settings)

    def test_explicit_buckets_must_cover_each_bucket_once(self, tmp_path):
        settings = sqlite_settings(tmp_path, 2, **{"dbrouter.shard.buckets": "8"})
        settings["dbrouter.shard.shards"] = "shard0=0-3 shard1=3-7"
        with pytest.raises(ConfigurationError, match="bucket 3 is given to both"):
            start(settings)
        settings["dbrouter.shard.shards"] = "shard0=0-3 shard1=5-7"
        with pytest.raises(ConfigurationError, match=r"missing \[4\]"):
            start(settings)
        settings["dbrouter.shard.shards"] = "shard0=0-3 shard1"
        with pytest.raises(ConfigurationError, match="every shard or for none"):
            start(settings)
        settings["dbrouter.shard.shards"] = "shard0=0-x shard1=4-7"
        with pytest.raises(ConfigurationError, match="'0-x' is not understood"):
            start(settings)

    def test_the_core_must_be_included_first(self, tmp_path):
        config = Configurator(settings=sqlite_settings(tmp_path, 2))
        with pytest.raises(ConfigurationError, match="include\\('pyramid_dbrouter'\\)"):
            config.include("dbrouter_shard")


class TestGoodSettings:
    def test_defaults(self, tmp_path):
        from dbrouter_shard import get_shards

        shards = get_shards(start(sqlite_settings(tmp_path, 3)))
        assert shards.names == ("shard0", "shard1", "shard2")
        assert (shards.strategy_name, shards.buckets) == ("modulo", 3)
        # user_id % N, the classic
        assert [shards.shard_for(k) for k in (0, 1, 2, 3, 4)] == [
            "shard0",
            "shard1",
            "shard2",
            "shard0",
            "shard1",
        ]

    def test_a_dotted_callable_strategy(self, tmp_path):
        from dbrouter_shard import get_shards

        strategy = f"{__name__}:shard_of_even"
        registry = start(
            sqlite_settings(tmp_path, 2, **{"dbrouter.shard.strategy": strategy})
        )
        shards = get_shards(registry)
        assert (shards.shard_for(10), shards.shard_for(11)) == ("shard0", "shard1")
        assert shards.strategy is shard_of_even

    def test_explicit_buckets(self, tmp_path):
        from dbrouter_shard import get_shards

        settings = sqlite_settings(tmp_path, 2, **{"dbrouter.shard.buckets": "8"})
        settings["dbrouter.shard.shards"] = "shard0=0-2,7 shard1=3-6"
        shards = get_shards(start(settings))
        assert shards.buckets_of("shard0") == [0, 1, 2, 7]
        assert shards.buckets_of("shard1") == [3, 4, 5, 6]
        assert (shards.shard_for(15), shards.shard_for(12)) == ("shard0", "shard1")

    def test_the_directive_shows_in_the_introspector(self, tmp_path):
        config = Configurator(settings=sqlite_settings(tmp_path, 2))
        config.include("pyramid_dbrouter")
        config.include("dbrouter_shard")
        config.commit()
        intr = config.registry.introspector.get("dbrouter shards", "dbrouter_shard")
        assert intr["shards"] == ("shard0", "shard1")
        assert intr["strategy"] == "modulo"


class TestDirective:
    def _config(self, tmp_path):
        settings = sqlite_settings(tmp_path, 2)
        del settings["dbrouter.shard.shards"]
        config = Configurator(settings=settings)
        config.include("pyramid_dbrouter")
        config.include("dbrouter_shard")
        return config

    def test_called_directly(self, tmp_path):
        from dbrouter_shard import get_shards

        config = self._config(tmp_path)
        config.add_db_shards(["shard1", "shard0"], strategy="hash", buckets=16)
        config.commit()
        shards = get_shards(config.registry)
        assert shards.names == ("shard1", "shard0") and shards.buckets == 16

    def test_arguments_are_checked_when_it_is_called(self, tmp_path):
        config = self._config(tmp_path)
        with pytest.raises(ConfigurationError, match=r"add_db_shards\(buckets=...\)"):
            config.add_db_shards(["shard0", "shard1"], buckets=0)
        with pytest.raises(ConfigurationError, match="callable strategy"):
            config.add_db_shards(
                ["shard0", "shard1"], strategy=shard_of_even, buckets=8
            )

    def test_called_twice_conflicts(self, tmp_path):
        config = self._config(tmp_path)
        config.add_db_shards(["shard0", "shard1"])
        config.add_db_shards(["shard1", "shard0"])
        with pytest.raises(ConfigurationConflictError):
            config.commit()

    def test_without_shards_nothing_is_routed(self, tmp_path):
        from dbrouter_shard import get_shards

        config = self._config(tmp_path)
        config.commit()
        with pytest.raises(LookupError, match="no shards configured"):
            get_shards(config.registry)
