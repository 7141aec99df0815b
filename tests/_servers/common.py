"""What every server helper shares: the error, the CI switch, names, ports."""

from __future__ import annotations

import importlib
import itertools
import os
import re
import secrets
import socket
import threading

REQUIRE_ENV = "DBROUTER_REQUIRE_SERVERS"


class ServerUnavailable(RuntimeError):
    """A server could not be started or reached; the message says why."""


def import_driver(module: str, distribution: str):
    """The driver *module*, imported on first use, so that the package imports
    without it; ServerUnavailable when *distribution* is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise ServerUnavailable(f"{distribution} is not installed: {exc}") from exc


def servers_required() -> bool:
    """True when a missing server must fail the run rather than skip tests."""
    return os.environ.get(REQUIRE_ENV, "").strip() == "1"


_names = itertools.count(1)


def unique_name(prefix: str = "t") -> str:
    """A database name no other test, run or xdist worker will pick.

    The pid tells runs apart, the counter tests within a run, and the random
    part guards against pid reuse on a server that outlives many runs.
    """
    return f"{prefix}_{os.getpid()}_{next(_names)}_{secrets.token_hex(3)}"


_VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _check_name(name: str) -> str:
    # Names end up in URLs and DDL; refusing odd ones beats quoting them twice.
    if not _VALID_NAME.match(name):
        raise ValueError(f"unsupported database name {name!r}")
    return name


_handed_out_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it; ports already given to a cluster of this process are
    skipped because the kernel may hand out a port again once it is closed.
    """
    with _port_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise ServerUnavailable("no free port found on 127.0.0.1")
