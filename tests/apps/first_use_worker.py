"""Many threads of one process commit their first two-phase transactions at
the same moment, as the first requests of a fresh deployment do.

Run as a subprocess with one JSON argument (tests/ and tests/apps/ on the
Python path)::

    python tests/apps/first_use_worker.py \\
        '{"engines": {"default": URL, "pg2": URL}, "threads": 16,
          "start_at": UNIX_TIME, "name": "p1"}'

Every thread waits for ``start_at`` (so that two processes start together),
then writes one row to each engine in one transaction.  The process prints
one JSON line: ``{"committed": N, "errors": ["...", ...]}``.
"""

import json
import sys
import threading
import time

from pyramid_dbrouter import session_scope
from twophase_app import Entry, make_app


def main(args):
    app = make_app(args["engines"])
    errors, committed = [], []

    def write(number):
        while time.time() < args["start_at"]:
            time.sleep(0.001)
        note = f"{args['name']}-{number}"
        try:
            with session_scope(app.registry) as session:
                for engine in args["engines"]:
                    session.using_bind(engine).add(Entry(note=note))
            committed.append(note)
        except Exception as exc:  # every failure is the test's finding
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=write, args=(n,)) for n in range(args["threads"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"committed": len(committed), "errors": errors}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
