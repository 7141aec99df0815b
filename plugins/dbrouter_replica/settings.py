"""The ``dbrouter.replica.*`` settings, and the checks the directive shares.

Each value is checked once, at start-up; an error names the key (or the
directive argument), the value, and what would be accepted.
"""

import math
import re

from pyramid.exceptions import ConfigurationError

PREFIX = "dbrouter.replica."
STRATEGIES = ("round_robin", "random")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")

#: the defaults, and why (README, "Primary and replicas")
DEFAULTS = {
    "primary": "default",
    "strategy": "round_robin",
    # a replica further behind than this is taken out of service...
    "max_lag_seconds": 3.0,
    # ...measured at most this often...
    "check_seconds": 1.0,
    # ...so one in service is at most 3 + 1 s behind: a writer reads from the
    # primary 5 s, that and 1 s for the clocks of several application servers
    "pin_seconds": 5.0,
    "cooldown_seconds": 10.0,
}
KNOWN = ("primary", "replicas", *DEFAULTS, "secret")


def parse_replica_settings(settings):
    """Keyword arguments for ``config.add_db_replicas`` from *settings*, or
    None when no ``dbrouter.replica.*`` key is set (the application may call
    the directive itself)."""
    given = {k[len(PREFIX) :]: v for k, v in settings.items() if k.startswith(PREFIX)}
    if not given:
        return None
    for key in given:
        if key not in KNOWN:
            raise ConfigurationError(
                f"{PREFIX}{key}: unknown setting; the settings of dbrouter_replica "
                "are " + ", ".join(PREFIX + k for k in KNOWN)
            )
    if not str(given.get("replicas", "")).strip():
        raise ConfigurationError(
            f"{PREFIX}replicas is required with "
            + ", ".join(PREFIX + k for k in sorted(given))
            + ": the names of the engines that replicate the primary, such as "
            "'replica1 replica2', or one line per primary, 'default = replica1 "
            "replica2'"
        )
    options = {"replicas": given.pop("replicas")}
    options.update(given)
    return options


def check_groups(replicas, primary, key, primary_key):
    """``{primary: [replica, ...]}`` from names of *primary*'s replicas, or
    lines ``PRIMARY = REPLICA ...`` (a mapping, from Python) for several."""
    if isinstance(replicas, dict):
        lines = [(p, list(rs)) for p, rs in replicas.items()]
        several = True
    elif isinstance(replicas, str) and "=" in replicas:
        lines, several = [], True
        for line in replicas.splitlines():
            if not line.strip():
                continue
            head, sep, rest = line.partition("=")
            if not sep:
                raise ConfigurationError(
                    f"{key}: line {line.strip()!r} names no primary; with several "
                    "primaries, write one line per primary: PRIMARY = REPLICA ..."
                )
            lines.append((head.strip(), rest.split()))
    else:
        names = replicas.split() if isinstance(replicas, str) else list(replicas)
        lines, several = [(primary, names)], False
    if several and primary != DEFAULTS["primary"]:
        raise ConfigurationError(
            f"{primary_key}: {primary!r} with {key} naming the primary of each "
            "line; leave it out, and name each primary on its line"
        )
    groups, seen = {}, {}
    for head, names in lines:
        check_name(head, key, "primary")
        if not names:
            raise ConfigurationError(
                f"{key}: {head!r} has no replicas; name at least one engine that "
                f"replicates it ({head} = replica1 replica2)"
            )
        if head in groups:
            raise ConfigurationError(f"{key}: primary {head!r} is named twice")
        for name in names:
            check_name(name, key, "replica")
            if name == head:
                raise ConfigurationError(
                    f"{key}: {name!r} is the primary itself ({primary_key} = "
                    f"{head}); name the engines that replicate it"
                )
            if name in seen:
                raise ConfigurationError(
                    f"{key}: {name!r} is named twice (replica of {seen[name]!r} "
                    f"and of {head!r}); a replica has one primary"
                )
            seen[name] = head
        groups[head] = list(names)
    for head in groups:
        if head in seen:
            raise ConfigurationError(
                f"{key}: {head!r} is a primary and a replica of {seen[head]!r}; "
                "replicas of a replica read from their primary's group"
            )
    return groups


def check_name(name, key, what):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"{key}: {name!r} is not an engine name (for a {what}); use letters, "
            "digits, '_' and '-', starting with a letter or '_'"
        )
    return name


def check_strategy(value, key):
    value = str(value).strip()
    if value not in STRATEGIES:
        raise ConfigurationError(
            f"{key}: {value!r} is not a strategy; use round_robin (each replica "
            "in turn) or random"
        )
    return value


def check_number(value, key, *, zero_ok=False, why=""):
    """A finite number of seconds, positive (or 0 when *zero_ok*)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero_ok):
        least = "0 or more" if zero_ok else "more than 0"
        raise ConfigurationError(
            f"{key}: {value!r} is not accepted; use a number of seconds, {least}{why}"
        )
    return number


def check_secret(value, key):
    if not isinstance(value, str) or len(value.strip()) < 16:
        shown = "unset" if value is None else f"{len(str(value))} characters long"
        raise ConfigurationError(
            f"{key} is {shown}: the pin cookie is signed with it; give at least 16 "
            "random characters, the same in every process of the application "
            "(or pin_seconds = 0 to turn read-your-writes pinning off)"
        )
    return value.strip()
