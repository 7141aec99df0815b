"""Clean-up: no cluster outlives its run, however the run ends."""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .processes import _alive, _children, _reap_postgres_zombies, _wait_dead

if TYPE_CHECKING:
    from .postgres import PostgresCluster

#: how every cluster's directory name begins; the owner's pid comes next
TMP_PREFIX = "dbrouter-pg-"

_clusters: list[PostgresCluster] = []
_cleanup_installed = False


def _register(cluster: PostgresCluster) -> None:
    global _cleanup_installed
    if not _cleanup_installed:
        _cleanup_installed = True
        _remove_abandoned_clusters()
        atexit.register(cleanup_all)
        _die_cleanly_on_signals()
    _clusters.append(cluster)


def _unregister(cluster: PostgresCluster) -> None:
    with contextlib.suppress(ValueError):
        _clusters.remove(cluster)


def cleanup_all() -> None:
    """Stop and delete every cluster of this process; newest first (replicas)."""
    for cluster in reversed(list(_clusters)):
        with contextlib.suppress(Exception):
            cluster.cleanup()
    _reap_postgres_zombies()


def _die_cleanly_on_signals() -> None:
    # atexit handlers do not run when SIGTERM or SIGHUP ends the process (a CI
    # timeout, a closed terminal).  The handler cleans up, then dies of the
    # same signal as it would have: raising SystemExit instead would only fail
    # the current test, since pytest catches it and goes on.  A handler
    # someone else installed is left alone.
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _clean_up_and_die)


def _clean_up_and_die(signum, frame) -> None:
    cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _remove_abandoned_clusters() -> None:
    """Stop and delete clusters whose owning process died without cleaning up.

    That happens when a test run is SIGKILLed; without this its postmasters
    would run until the machine stops.
    """
    pattern = os.path.join(tempfile.gettempdir(), f"{TMP_PREFIX}*")
    for base in glob.glob(pattern):
        match = re.match(rf"{re.escape(TMP_PREFIX)}(\d+)-", os.path.basename(base))
        if not match or int(match.group(1)) == os.getpid():
            continue
        if _alive(int(match.group(1))):
            continue
        pid_file = Path(base, "data", "postmaster.pid")
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            # The pid may have been reused by an unrelated process since.
            if _alive(pid) and str(Path(base, "data")).encode() in cmdline:
                doomed = [pid, *_children(pid)]
                for victim in doomed:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                _wait_dead(doomed, timeout=5)
        shutil.rmtree(base, ignore_errors=True)
