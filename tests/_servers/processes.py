"""The server processes: finding them, telling the living from the dead.

pg_ctl leaves the postmaster orphaned on purpose.  Where the init process does
not reap orphans (this kind of machine: PID 1 is not a real init), every
stopped or killed postmaster would stay a zombie, and a zombie's pid in
postmaster.pid makes the next start refuse ("is another postmaster
running?").  Making this process a child subreaper (Linux) brings the
orphans back to us, and we reap the ones that are postgres processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
_subreaper_tried = False


def _become_subreaper() -> None:
    global _subreaper_tried
    if _subreaper_tried or not sys.platform.startswith("linux"):
        return
    _subreaper_tried = True
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _proc_stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, command name) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses; it ends at the last ")".
    head, _, rest = raw.rpartition(")")
    fields = rest.split()
    return fields[0], int(fields[1]), head.partition("(")[2]


def _alive(pid: int) -> bool:
    if Path("/proc").is_dir():
        stat = _proc_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                found.append(int(entry.name))
    return found


def _reap_postgres_zombies() -> None:
    """Collect exit statuses of postgres processes that were orphaned to us.

    Only dead postgres processes are waited for, so the subprocess module never
    loses the status of a child it is waiting for itself.
    """
    for pid in _children(os.getpid()):
        stat = _proc_stat(pid)
        if stat is not None and stat[0] == "Z" and stat[2] == "postgres":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _wait_dead(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap_postgres_zombies()
        if not any(_alive(pid) for pid in pids):
            _reap_postgres_zombies()  # some may have died since the last pass
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
