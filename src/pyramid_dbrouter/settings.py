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

DEFAULT = "default"
PREFIX = "sqlalchemy."

#: engine names become identifiers in transaction ids and log lines
ENGINE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
#: psycopg rewrites transaction ids shaped like ``digits_x_y``; MySQL allows 64
#: bytes per id, so the prefix stays short and starts with a letter.
XID_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")
TWOPHASE_MODES = ("auto", "off")
FANOUT_PARALLEL_MODES = ("auto", "always", "never")
_SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "passfile", "sslpassword"})


def mask_url(url):
    """Return *url* as a string with its password replaced by ``***``."""
    try:
        parsed = make_url(url)
        # libpq and others also take a password as a query parameter
        secret = {k: "***" for k in parsed.query if k.lower() in _SECRET_PARAMS}
        return parsed.update_query_dict(secret).render_as_string(hide_password=True)
    except Exception:
        # not parseable as a URL: mask anything between ``:`` and ``@``
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", str(url))


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
    engines = parse_engines(settings)
    routers = aslist(settings.get("dbrouter.routers", ""))
    twophase = str(settings.get("dbrouter.twophase", "auto")).strip().lower()
    if twophase not in TWOPHASE_MODES:
        raise ConfigurationError(
            f"dbrouter.twophase: {settings['dbrouter.twophase']!r} is not one of "
            + ", ".join(TWOPHASE_MODES)
        )
    coordinator = str(settings.get("dbrouter.coordinator", DEFAULT)).strip()
    check_engine_name(coordinator, "dbrouter.coordinator")
    xid_prefix = str(settings.get("dbrouter.xid_prefix", "dbr")).strip()
    if not XID_PREFIX.match(xid_prefix):
        raise ConfigurationError(
            f"dbrouter.xid_prefix: {xid_prefix!r} must start with a letter and "
            "hold at most 16 letters, digits, '_' or '-'"
        )
    max_dynamic = as_positive_int(
        settings.get("dbrouter.max_dynamic_engines", 32), "dbrouter.max_dynamic_engines"
    )
    metadata = settings.get("dbrouter.metadata") or None
    fanout_workers = as_positive_int(
        settings.get("dbrouter.fanout_workers", 8), "dbrouter.fanout_workers"
    )
    fanout_timeout = as_timeout(
        settings.get("dbrouter.fanout_timeout"), "dbrouter.fanout_timeout"
    )
    fanout_parallel = str(settings.get("dbrouter.fanout_parallel", "auto"))
    if fanout_parallel.strip().lower() not in FANOUT_PARALLEL_MODES:
        raise ConfigurationError(
            f"dbrouter.fanout_parallel: {fanout_parallel!r} is not one of "
            + ", ".join(FANOUT_PARALLEL_MODES)
        )
    known = {
        "dbrouter.routers",
        "dbrouter.twophase",
        "dbrouter.coordinator",
        "dbrouter.xid_prefix",
        "dbrouter.max_dynamic_engines",
        "dbrouter.metadata",
        "dbrouter.fanout_workers",
        "dbrouter.fanout_timeout",
        "dbrouter.fanout_parallel",
    }
    for key in settings:
        # plugins keep their own settings one level down (dbrouter.replica.*)
        if key.startswith("dbrouter.") and key.count(".") == 1 and key not in known:
            raise ConfigurationError(
                f"{key}: unknown setting; known dbrouter settings: "
                + ", ".join(sorted(known))
            )
    return DBRouterSettings(
        engines=engines,
        routers=routers,
        twophase=twophase,
        coordinator=coordinator,
        xid_prefix=xid_prefix,
        max_dynamic_engines=max_dynamic,
        metadata=metadata,
        fanout_workers=fanout_workers,
        fanout_timeout=fanout_timeout,
        fanout_parallel=fanout_parallel.strip().lower(),
    )
