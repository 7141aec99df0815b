"""The ``dbrouter.archive.*`` settings, and the checks the directive shares.

Each value is checked once, at start-up; an error names the key (or the
directive argument), the value, and what would be accepted.
"""

import re

from pyramid.exceptions import ConfigurationError
from pyramid.settings import aslist

PREFIX = "dbrouter.archive."
KEYS = ("hot", "archive", "models", "references", "archive_writes")
ARCHIVE_WRITES = ("origin", "refuse")
_ENGINE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
#: ``PREFIX:*``: the engines ``PREFIX:KEY`` of a core engine factory, one per key
_PER_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]{0,62}):\*")
_DOTTED = re.compile(r"[A-Za-z_][\w.]*[:.][A-Za-z_]\w*")


def parse_archive_settings(settings):
    """Keyword arguments for ``config.add_db_archive`` from *settings*, or
    None when ``dbrouter.archive.archive`` is not set (the application may
    call the directive itself)."""
    given = {k[len(PREFIX) :]: v for k, v in settings.items() if k.startswith(PREFIX)}
    for key in given:
        if key not in KEYS:
            raise ConfigurationError(
                f"{PREFIX}{key}: unknown setting; the settings of dbrouter_archive "
                f"are {', '.join(PREFIX + k for k in KEYS)}"
            )
    if not str(given.get("archive", "")).strip():
        if given:
            raise ConfigurationError(
                f"{PREFIX}archive is required with "
                f"{', '.join(PREFIX + k for k in sorted(given))}: the name of the "
                "engine holding the archived rows"
            )
        return None
    options = {"archive": check_engine(given["archive"], PREFIX + "archive")}
    if "hot" in given:
        options["hot"] = check_engine(given["hot"], PREFIX + "hot")
    if "models" in given:
        options["models"] = check_models(aslist(given["models"]), PREFIX + "models")
    if "references" in given:
        options["references"] = check_models(
            aslist(given["references"]), PREFIX + "references"
        )
    if "archive_writes" in given:
        options["archive_writes"] = check_archive_writes(
            given["archive_writes"], PREFIX + "archive_writes"
        )
    return options


def check_engine(value, key):
    """An engine name, or ``PREFIX:*`` (the engines of an engine factory)."""
    value = str(value).strip()
    if not (_ENGINE.fullmatch(value) or _PER_KEY.fullmatch(value)):
        raise ConfigurationError(
            f"{key}: {value!r} is not an engine name; use letters, digits, '_' and "
            "'-', the NAME of a sqlalchemy.NAME.url setting (or default), or "
            "PREFIX:* for the engines PREFIX:KEY of an engine factory (tenant:*)"
        )
    return value


def per_key_prefix(value):
    """``"tenant"`` for ``"tenant:*"``; None for an engine name."""
    match = _PER_KEY.fullmatch(value)
    return match.group(1) if match else None


def check_models(values, key):
    """Dotted names (or classes) of mapped classes; resolved by the directive."""
    if isinstance(values, str) or not values:
        raise ConfigurationError(
            f"{key}: {values!r} names no models; give the dotted names of mapped "
            "classes (myapp.models:Order), or leave the setting out for every model"
        )
    for value in values:
        if isinstance(value, str) and not _DOTTED.fullmatch(value):
            raise ConfigurationError(
                f"{key}: {value!r} is not a dotted name; name a mapped class as "
                "package.module:Class or package.module.Class"
            )
    return list(values)


def check_archive_writes(value, key):
    value = str(value).strip()
    if value not in ARCHIVE_WRITES:
        raise ConfigurationError(
            f"{key}: {value!r} is not accepted; use origin (an object loaded from "
            "the archive is written back there) or refuse (the archive is "
            "read-only to the application: writing such an object is an error)"
        )
    return value
