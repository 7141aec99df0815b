"""The ``dbrouter.tenant.*`` settings, read and checked in one place.

A bad value is a :class:`pyramid.exceptions.ConfigurationError` at start-up
that names the key, the value (passwords masked) and what would be accepted.
Nothing here connects to a database; the root folder is looked at, since a
typo in it would otherwise show as every album answering 404.
"""

import os
import re
from dataclasses import dataclass

from pyramid.exceptions import ConfigurationError
from pyramid.settings import asbool, falsey, truthy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from pyramid_dbrouter.settings import mask_url

PREFIX = "dbrouter.tenant."
MODES = ("sqlite-folder", "database", "schema")
RESOLVERS = ("matchdict", "subdomain", "header")
#: databases and schemas are named PREFIX + KEY; PostgreSQL allows 63 bytes
#: per identifier, keys take at most 48 of them
NAME_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,14}")
HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
KNOWN = (
    "mode",
    "root",
    "filename",
    "url",
    "engine",
    "name_prefix",
    "resolver",
    "matchdict_key",
    "header",
    "domain",
    "metadata",
    "attach",
)


@dataclass(frozen=True)
class TenantSettings:
    mode: str
    resolver: str
    metadata: str
    root: str = None
    filename: str = "album.sqlite"
    url: object = None
    engine: str = "default"
    name_prefix: str = "tenant_"
    matchdict_key: str = "tenant"
    header: str = "X-Tenant"
    domain: str = None
    attach: bool = False


def _error(key, value, expected):
    if value is None:
        return ConfigurationError(f"{PREFIX}{key} is not set, and {expected}")
    shown = mask_url(value) if key == "url" else value
    return ConfigurationError(f"{PREFIX}{key}: {shown!r} {expected}")


def _check_filename(value):
    if (
        not value
        or value in (".", "..")
        or "\x00" in value
        or os.sep in value
        or (os.altsep and os.altsep in value)
        or "/" in value
    ):
        raise _error(
            "filename",
            value,
            "is not a plain file name; use a name such as album.sqlite, "
            "without folders",
        )
    return value


def _check_attach(value):
    if isinstance(value, bool):
        return value
    word = str(value).lower()
    # asbool alone would read a typo as false
    if word in truthy or word in falsey:
        return asbool(word)
    raise _error(
        "attach",
        value,
        "is not a boolean; use true to write the albums of one transaction "
        "through one SQLite connection, committed together, or false",
    )


def _check_url(value):
    try:
        url = make_url(value)
        url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise _error(
            "url",
            value,
            "is not a database URL with a known dialect (expected "
            f"dialect+driver://user:password@host/maintenance_db): {exc}",
        ) from None
    if url.get_backend_name() not in ("postgresql", "mysql", "mariadb"):
        raise _error(
            "url",
            value,
            "names a server the database mode cannot create databases on; "
            "use postgresql or mysql/mariadb, or the sqlite-folder mode",
        )
    return url


def parse_tenant_settings(settings):
    """Return the checked :class:`TenantSettings` of *settings* (a mapping)."""
    given = {
        k[len(PREFIX) :]: v.strip() if isinstance(v, str) else v
        for k, v in settings.items()
        if k.startswith(PREFIX) and v is not None
    }
    for key in given:
        if key not in KNOWN:
            raise ConfigurationError(
                f"{PREFIX}{key}: unknown setting; known: "
                + ", ".join(PREFIX + k for k in KNOWN)
            )
    mode = given.get("mode")
    if mode not in MODES:
        raise _error("mode", mode, "must be one of " + " | ".join(MODES))
    values = {"mode": mode}
    if mode == "sqlite-folder":
        root = given.get("root")
        if not root or not os.path.isdir(root):
            raise _error(
                "root",
                root,
                "is not an existing folder; the sqlite-folder mode keeps each "
                "tenant in ROOT/KEY/FILENAME",
            )
        # compared with resolved paths later: resolve the root's own symlinks
        values["root"] = os.path.realpath(root)
        values["filename"] = _check_filename(given.get("filename", "album.sqlite"))
        if "attach" in given:
            values["attach"] = _check_attach(given["attach"])
    elif mode == "database":
        if not given.get("url"):
            raise _error(
                "url",
                given.get("url"),
                "is required by the database mode: the server's URL, its "
                "database part replaced by NAME_PREFIX + KEY for each tenant",
            )
        values["url"] = _check_url(given["url"])
    else:
        engine = given.get("engine", "default")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,62}", engine):
            raise _error("engine", engine, "is not an engine name")
        values["engine"] = engine
    if mode != "sqlite-folder":
        prefix = given.get("name_prefix", "tenant_")
        if not NAME_PREFIX.fullmatch(prefix):
            raise _error(
                "name_prefix",
                prefix,
                "must be 1 to 15 lower-case letters, digits or '_', starting "
                "with a letter or '_'",
            )
        values["name_prefix"] = prefix
    for key in ("root", "filename", "url", "engine", "name_prefix", "attach"):
        if key in given and key not in values:
            raise _error(key, given[key], f"does not apply to the {mode} mode")
    values.update(_parse_resolver(given))
    metadata = given.get("metadata") or settings.get("dbrouter.metadata")
    if not metadata:
        raise _error(
            "metadata",
            metadata,
            "is required (or dbrouter.metadata): the dotted name of the MetaData "
            "or declarative base whose tables every tenant holds",
        )
    values["metadata"] = metadata
    return TenantSettings(**values)


def _parse_resolver(given):
    resolver = given.get("resolver", "matchdict")
    values = {"resolver": resolver}
    if resolver == "matchdict":
        values["matchdict_key"] = given.get("matchdict_key", "tenant")
    elif resolver == "header":
        header = given.get("header", "X-Tenant")
        if not HEADER.fullmatch(header):
            raise _error("header", header, "is not an HTTP header name")
        values["header"] = header
    elif resolver == "subdomain":
        domain = str(given.get("domain", "")).lower()
        if not DOMAIN.fullmatch(domain):
            raise _error(
                "domain",
                given.get("domain"),
                "is required by the subdomain resolver: the parent domain, e.g. "
                "example.com, under which KEY.example.com names tenant KEY",
            )
        values["domain"] = domain
    elif not (resolver and re.fullmatch(r"[\w.]+:[\w.]+|[\w]+(\.[\w]+)+", resolver)):
        raise _error(
            "resolver",
            resolver,
            "is not a resolver; use one of "
            + ", ".join(RESOLVERS)
            + ", or the dotted name of a callable request -> key or None",
        )
    for key in ("matchdict_key", "header", "domain"):
        if key in given and key not in values:
            raise _error(key, given[key], f"does not apply to the {resolver} resolver")
    return values


def as_settings(mode, options):
    """``set_tenant_mode``'s arguments as settings, so that both are checked
    by the same code and their errors name the same keys."""
    settings = {PREFIX + "mode": mode}
    settings.update((PREFIX + k, v) for k, v in options.items() if v is not None)
    return settings
