"""``dbrouter archive`` (or any ``dbrouter`` command), killed by SIGKILL at a
chosen point: of the move (``dbrouter_archive.move.checkpoint``: "copied",
"deleted") or of the two-phase commit (``twophase_fixtures.inject_fault``:
"prepared", "decided", ...).

Run as a subprocess with one JSON argument, tests/, tests/apps and
tests/plugins on the Python path::

    python tests/plugins/archive_worker.py '{"argv": ["archive", INI, ...],
        "kill_at": "copied", "engine": null, "occurrence": 1}'

Before dying it prints ``{"killed_at": NAME}`` (with ``gtrid`` for a point
of the commit); if the point is never reached it prints
``{"finished": STATUS}``.
"""

import json
import os
import signal
import sys

import dbrouter_archive.move as move
from pyramid_dbrouter import cli

MOVE_POINTS = ("copied", "deleted")


def say(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main(argv):
    job = json.loads(argv[1])
    point, occurrence = job["kill_at"], job.get("occurrence", 1)
    reached = 0

    if point in MOVE_POINTS:

        def checkpoint(name):
            nonlocal reached
            if name == point:
                reached += 1
                if reached == occurrence:
                    say(killed_at=point)
                    os.kill(os.getpid(), signal.SIGKILL)

        move.checkpoint = checkpoint
    else:
        from pyramid_dbrouter.checkpoints import Checkpoint
        from twophase_fixtures import inject_fault

        def die():
            say(killed_at=point, gtrid=fault.gtrid)
            os.kill(os.getpid(), signal.SIGKILL)

        at = (Checkpoint(point), job.get("engine"))
        fault = inject_fault(setattr, at, die, occurrence)
    status = cli.main(job["argv"])
    say(finished=status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
