"""One write of tests/apps/twophase_app.py, killed by SIGKILL at a chosen point
of its commit: the crash that ``dbrouter recover`` has to clean up after.

Run as a subprocess, with one JSON argument, and tests/ on the Python path
(for ``twophase_fixtures.inject_fault``, the suites' fault-injection seam)::

    PYTHONPATH=tests python tests/apps/fault_worker.py \\
        '{"engines": {"default": URL, "pg2": URL}, "note": "n1",
          "kill_at": "prepared", "engine": "default"}'

* ``engines``: ``{name: url}`` for ``fault_app.make_app``; one row with
  the given ``note`` is written to each of them (or to those listed in
  ``write``), in one request (WebTest, in this process).
* ``kill_at``: a checkpoint of the commit, the value of a
  ``pyramid_dbrouter.checkpoints.Checkpoint`` ("prepared", "decided", ...),
  and ``engine`` the engine it concerns (none for the points without one),
  as ``twophase_fixtures.inject_fault`` takes them; ``occurrence`` (default 1)
  says which time the point is reached kills.
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

from fault_app import make_app
from pyramid_dbrouter.checkpoints import Checkpoint
from twophase_fixtures import inject_fault


def say(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main(argv):
    job = json.loads(argv[1])
    engines = job["engines"]
    kill_at, engine = job["kill_at"], job.get("engine")

    def die():
        say(killed_at=kill_at, engine=engine, gtrid=fault.gtrid)
        os.kill(os.getpid(), signal.SIGKILL)

    at = (Checkpoint(kill_at), engine)
    fault = inject_fault(setattr, at, die, job.get("occurrence", 1))
    app = webtest.TestApp(make_app(engines, **job.get("settings", {})))
    form = {"note": job["note"], "engines": ",".join(job.get("write", engines))}
    if job.get("touch"):
        form["touch"] = ",".join(job["touch"])
        response = app.post("/write-and-touch", form)
    else:
        response = app.post("/write", form)
    say(finished=response.status, gtrid=fault.gtrid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
