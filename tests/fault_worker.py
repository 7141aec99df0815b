"""One write of tests/twophase_app.py, killed by SIGKILL at a chosen point
of its commit: the crash that ``dbrouter recover`` has to clean up after.

Run as a subprocess, with one JSON argument::

    python tests/fault_worker.py '{"engines": {"default": URL, "pg2": URL},
        "note": "n1", "kill_at": "prepared", "engine": "default"}'

* ``engines``: ``{name: url}`` for ``fault_app.make_app``; one row with
  the given ``note`` is written to each of them (or to those listed in
  ``write``), in one request (WebTest, in this process).
* ``kill_at``: a name the commit passes to ``pyramid_dbrouter.twophase.
  checkpoint`` (the fault-injection seam: "prepared", "decided", ...);
  ``engine``, when given, counts only that engine's occurrences;
  ``occurrence`` (default 1) says which one kills.
* ``touch``: engines that also run an UPDATE matching no row (optional):
  they prepare a branch that changed nothing.
* ``settings``: more application settings (optional).

Before dying the process prints one JSON line on stdout, and flushes it:
``{"killed_at": NAME, "engine": ENGINE, "gtrid": GTRID}``, the global
transaction id of the write.  SIGKILL leaves nothing to chance: no
``finally``, no ``atexit``, no socket closed politely -- the operating
system drops the connections as in an OOM kill.  If the point is never
reached the write completes, the process prints ``{"finished": ...}`` and
exits 0, which the parent must take as a failed scenario.
"""

import json
import os
import signal
import sys

import webtest

import pyramid_dbrouter.twophase as twophase
from fault_app import make_app


def say(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def arm(kill_at, engine=None, occurrence=1):
    """Replace the commit's checkpoint (and watch its transaction id)."""
    seen = {"count": 0, "gtrid": None}
    current_gtrid = twophase.current_gtrid

    def watching_gtrid(session):
        seen["gtrid"] = current_gtrid(session)
        return seen["gtrid"]

    def checkpoint(name, engine_name=None):
        if name != kill_at or (engine is not None and engine_name != engine):
            return
        seen["count"] += 1
        if seen["count"] == occurrence:
            say(killed_at=name, engine=engine_name, gtrid=seen["gtrid"])
            os.kill(os.getpid(), signal.SIGKILL)

    twophase.current_gtrid = watching_gtrid
    twophase.checkpoint = checkpoint
    return seen


def main(argv):
    job = json.loads(argv[1])
    engines = job["engines"]
    seen = arm(job["kill_at"], job.get("engine"), job.get("occurrence", 1))
    app = webtest.TestApp(make_app(engines, **job.get("settings", {})))
    form = {"note": job["note"], "engines": ",".join(job.get("write", engines))}
    if job.get("touch"):
        form["touch"] = ",".join(job["touch"])
        response = app.post("/write-and-touch", form)
    else:
        response = app.post("/write", form)
    say(finished=response.status, gtrid=seen["gtrid"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
