"""Reading the ``sqlalchemy.*`` and ``dbrouter.*`` settings, in one place.

Every value is checked here, once, at start-up: a bad value is a
:class:`pyramid.exceptions.ConfigurationError` that names the key and the
value (with any password masked), and says what would have been accepted.
Nothing here connects to a database.
"""

import re
from dataclasses import dataclass, field

from pyramid.settings import aslist
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from .exceptions import ConfigurationError
from .masking import mask_url

__all__ = ["mask_url", "parse_settings", "parse_engines", "SETTINGS"]

DEFAULT = "default"
PREFIX = "sqlalchemy."

#: engine names become identifiers in transaction ids and log lines
ENGINE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
#: psycopg rewrites transaction ids shaped like ``digits_x_y``; MySQL allows 64
#: bytes per id, so the prefix stays short and starts with a letter.
XID_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")
TWOPHASE_MODES = ("auto", "off")
FANOUT_PARALLEL_MODES = ("auto", "always", "never")


def check_engine_name(name, key):
    if not isinstance(name, str) or not ENGINE_NAME.match(name):
        raise ConfigurationError(
            f"{key}: {name!r} is not a valid engine name; use letters, digits, "
            "'_' and '-', starting with a letter or '_'"
        )
    return name


def check_url(url, key):
    """Parse *url* now, so that a typo fails at start-up and not at first use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"{key}: {mask_url(url)!r} is not a database URL "
            "(expected dialect+driver://user:password@host/database)"
        ) from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigurationError(
            f"{key}: {mask_url(url)!r} names an unknown SQLAlchemy dialect "
            f"{parsed.drivername!r}"
        ) from None
    return parsed


def as_positive_int(value, key):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ConfigurationError(f"{key}: {value!r} is not a positive whole number")
    return number


def as_timeout(value, key):
    """Seconds (a positive number), or None for ``none``/empty: no limit."""
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigurationError(
            f"{key}: {value!r} is not a positive number of seconds (or 'none')"
        )
    return seconds


@dataclass
class EngineSpec:
    """What the settings say about one named engine; it is created later."""

    name: str
    url: object = None
    options: dict = field(default_factory=dict)
    engine: Engine = None


@dataclass
class DBRouterSettings:
    engines: dict
    routers: list
    twophase: str = "auto"
    coordinator: str = DEFAULT
    xid_prefix: str = "dbr"
    max_dynamic_engines: int = 32
    metadata: str = None
    fanout_workers: int = 8
    fanout_timeout: float = None
    fanout_parallel: str = "auto"


def _routers(value, key):
    return aslist(value or "")


def _twophase(value, key):
    mode = str(value).strip().lower()
    if mode not in TWOPHASE_MODES:
        raise ConfigurationError(
            f"{key}: {value!r} is not one of " + ", ".join(TWOPHASE_MODES)
        )
    return mode


def _engine_name(value, key):
    return check_engine_name(str(value).strip(), key)


def _xid_prefix(value, key):
    prefix = str(value).strip()
    if not XID_PREFIX.match(prefix):
        raise ConfigurationError(
            f"{key}: {prefix!r} must start with a letter and hold at most 16 "
            "letters, digits, '_' or '-'"
        )
    return prefix


def _fanout_parallel(value, key):
    mode = str(value).strip().lower()
    if mode not in FANOUT_PARALLEL_MODES:
        raise ConfigurationError(
            f"{key}: {value!r} is not one of " + ", ".join(FANOUT_PARALLEL_MODES)
        )
    return mode


def _optional(value, key):
    return value or None


@dataclass(frozen=True)
class Setting:
    """One ``dbrouter.*`` key: its default, and how its value is checked
    (``parse(value, key)`` returns the value or raises ConfigurationError)."""

    name: str
    default: object
    parse: object

    @property
    def key(self):
        return f"dbrouter.{self.name}"


#: every ``dbrouter.*`` setting of the core, in the order the README lists
#: them; the field of :class:`DBRouterSettings` has the setting's name
SETTINGS = (
    Setting("routers", "", _routers),
    Setting("twophase", "auto", _twophase),
    Setting("coordinator", DEFAULT, _engine_name),
    Setting("xid_prefix", "dbr", _xid_prefix),
    Setting("max_dynamic_engines", 32, lambda v, k: as_positive_int(v, k)),
    Setting("metadata", None, _optional),
    Setting("fanout_workers", 8, lambda v, k: as_positive_int(v, k)),
    Setting("fanout_timeout", None, lambda v, k: as_timeout(v, k)),
    Setting("fanout_parallel", "auto", _fanout_parallel),
)


def parse_engines(settings, prefix=PREFIX):
    """Return ``{name: EngineSpec}`` from ``sqlalchemy.url`` and
    ``sqlalchemy.NAME.url`` keys, and the ``sqlalchemy.[NAME.]OPTION`` keys
    that go with them.

    An :class:`~sqlalchemy.engine.Engine` passed as ``settings["dbengine"]``
    stands in for ``default`` (the cookiecutter-starter's test seam).
    """
    keys = {k[len(prefix) :]: v for k, v in settings.items() if k.startswith(prefix)}
    named = sorted(
        rest[: -len(".url")]
        for rest in keys
        if rest.endswith(".url") and rest.count(".") == 1
    )
    specs = {DEFAULT: EngineSpec(DEFAULT)}
    for name in named:
        if name == DEFAULT:
            raise ConfigurationError(
                f"{prefix}{DEFAULT}.url: the engine named {DEFAULT!r} is "
                f"configured by {prefix}url"
            )
        specs[name] = EngineSpec(check_engine_name(name, f"{prefix}{name}.url"))
    for rest, value in keys.items():
        head, dot, option = rest.partition(".")
        if not dot:
            spec, option = specs[DEFAULT], head
        elif head in specs:
            spec = specs[head]
        else:
            raise ConfigurationError(
                f"{prefix}{rest}: there is no engine named {head!r} (no "
                f"{prefix}{head}.url); configured engines: "
                + ", ".join(repr(n) for n in specs)
            )
        if option == "url":
            spec.url = check_url(value, prefix + rest)
        else:
            spec.options[option] = value

    dbengine = settings.get("dbengine")
    if isinstance(dbengine, Engine):
        specs[DEFAULT].engine = dbengine
    elif specs[DEFAULT].url is None:
        raise ConfigurationError(
            f"{prefix}url is required: the URL of the engine named {DEFAULT!r}"
        )
    return specs


def parse_settings(settings):
    """Check every ``sqlalchemy.*`` and ``dbrouter.*`` setting; return them parsed."""
    values = {
        setting.name: setting.parse(
            settings.get(setting.key, setting.default), setting.key
        )
        for setting in SETTINGS
    }
    known = {setting.key for setting in SETTINGS}
    for key in settings:
        # plugins keep their own settings one level down (dbrouter.replica.*)
        if key.startswith("dbrouter.") and key.count(".") == 1 and key not in known:
            raise ConfigurationError(
                f"{key}: unknown setting; known dbrouter settings: "
                + ", ".join(sorted(known))
            )
    return DBRouterSettings(engines=parse_engines(settings), **values)
