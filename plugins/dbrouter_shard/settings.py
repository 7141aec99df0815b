"""The ``dbrouter.shard.*`` settings, and the checks the directive shares.

Each value is checked once, at start-up; an error names the key (or the
directive argument), the value, and what would be accepted.
"""

import re

from pyramid.exceptions import ConfigurationError
from pyramid.settings import aslist

from .ids import MAX_BUCKETS, MAX_NODE
from .strategies import BUILTIN

PREFIX = "dbrouter.shard."
ON_MISSING_KEY = ("fanout", "error")
_BUCKETS = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_shard_settings(settings):
    """Keyword arguments for ``config.add_db_shards`` from *settings*, or
    None when ``dbrouter.shard.shards`` is not set (the application may call
    the directive itself)."""
    if not settings.get(PREFIX + "shards", "").strip():
        unknown = sorted(k for k in settings if k.startswith(PREFIX))
        if unknown:
            raise ConfigurationError(
                f"{PREFIX}shards is required with {', '.join(unknown)}: the names of "
                "the engines holding the shards, in order"
            )
        return None
    shards = check_shards(aslist(settings[PREFIX + "shards"]), PREFIX + "shards")
    options = {"shards": shards}
    if PREFIX + "strategy" in settings:
        options["strategy"] = check_strategy_name(
            settings[PREFIX + "strategy"], PREFIX + "strategy"
        )
    if PREFIX + "buckets" in settings:
        options["buckets"] = check_buckets(
            settings[PREFIX + "buckets"], PREFIX + "buckets", shards
        )
    if PREFIX + "on_missing_key" in settings:
        options["on_missing_key"] = check_on_missing_key(
            settings[PREFIX + "on_missing_key"], PREFIX + "on_missing_key"
        )
    if PREFIX + "id_node" in settings:
        options["id_node"] = check_id_node(
            settings[PREFIX + "id_node"], PREFIX + "id_node"
        )
    known = {"shards", "strategy", "buckets", "on_missing_key", "id_node"}
    for key in settings:
        if key.startswith(PREFIX) and key[len(PREFIX) :] not in known:
            raise ConfigurationError(
                f"{key}: unknown setting; the settings of dbrouter_shard are "
                + ", ".join(PREFIX + k for k in sorted(known))
            )
    return options


def check_shards(entries, key):
    """``[(engine name, buckets or None)]`` from ``NAME`` or ``NAME=0-15,32``."""
    if isinstance(entries, str) or not entries:
        raise ConfigurationError(
            f"{key}: {entries!r} names no shards; give the engine names holding the "
            "shards, in order (NAME, or NAME=BUCKETS such as shard_a=0-15,32)"
        )
    parsed, seen = [], set()
    for entry in entries:
        if isinstance(entry, tuple):
            name, spec = entry
        else:
            name, _, spec = str(entry).partition("=")
            spec = spec or None
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,62}", name):
            raise ConfigurationError(
                f"{key}: {entry!r} is not an engine name; use letters, digits, '_' "
                "and '-' (NAME, or NAME=BUCKETS such as shard_a=0-15,32)"
            )
        if name in seen:
            raise ConfigurationError(f"{key}: engine {name!r} is named twice")
        seen.add(name)
        parsed.append((name, None if spec is None else _bucket_spec(spec, key)))
    given = [spec is not None for _n, spec in parsed]
    if any(given) and not all(given):
        raise ConfigurationError(
            f"{key}: give buckets for every shard or for none (NAME=0-15,32), not "
            f"for some: {' '.join(str(e) for e in entries)!r}"
        )
    return parsed


def _bucket_spec(spec, key):
    if isinstance(spec, frozenset):
        return spec
    found = set()
    for part in str(spec).split(","):
        match = _BUCKETS.fullmatch(part.strip())
        if match is None:
            raise ConfigurationError(
                f"{key}: bucket list {spec!r} is not understood; use numbers and "
                "ranges separated by commas, such as 0-15,32"
            )
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first:
            raise ConfigurationError(f"{key}: bucket range {part!r} goes backwards")
        found.update(range(first, last + 1))
    return frozenset(found)


def check_strategy_name(value, key):
    """``modulo``, ``hash``, or a dotted name (resolved by the directive)."""
    if callable(value):
        return value
    value = str(value).strip()
    if value in BUILTIN or re.fullmatch(r"[A-Za-z_][\w.]*[:.][A-Za-z_]\w*", value):
        return value
    raise ConfigurationError(
        f"{key}: {value!r} is not a strategy; use modulo, hash (CRC32 of the key's "
        "text), or the dotted name of a callable (key) -> engine name, such as "
        "myapp.sharding:shard_of"
    )


def check_buckets(value, key, shards):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not len(shards) <= number <= MAX_BUCKETS:
        raise ConfigurationError(
            f"{key}: {value!r} is not a number of buckets; use a whole number from "
            f"the number of shards ({len(shards)}) to {MAX_BUCKETS}, and keep it "
            "once rows are written"
        )
    return number


def check_on_missing_key(value, key):
    value = str(value).strip()
    if value not in ON_MISSING_KEY:
        raise ConfigurationError(
            f"{key}: {value!r} is not accepted; use fanout (read every shard) or "
            "error (refuse a read that does not pin the shard key)"
        )
    return value


def check_id_node(value, key):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 <= number <= MAX_NODE:
        raise ConfigurationError(
            f"{key}: {value!r} is not a node number; use a whole number from 0 to "
            f"{MAX_NODE}, different for each process making ids at the same time"
        )
    return number
