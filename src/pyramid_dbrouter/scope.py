"""Sessions outside requests: one transaction for a script, a job or a thread.

A request gets ``request.dbsession``, joined to ``request.tm`` by
pyramid_tm.  Everything else -- a ``pshell`` session, a cron job, a worker
thread -- takes :func:`session_scope`, which begins one transaction on a
transaction manager of its own and commits it, or aborts it, when the block
ends: the same commit rules (one-phase, two-phase, last resource) as a
request's.
"""

from contextlib import contextmanager

import transaction

from .config import build_from_settings
from .factory import get_tm_session


@contextmanager
def session_scope(registry_or_settings, request=None):
    """One transaction for a script or a thread, outside any request.

    ``registry_or_settings`` is a Pyramid registry (its session factory is
    used) or a settings mapping (an application's configuration is built
    from it, plugins of ``pyramid.includes`` included, and its engines
    disposed of at the end).  The transaction commits when the block ends,
    or aborts if it raises::

        with session_scope(env["registry"]) as dbsession:
            dbsession.add(Photo(title="dawn"))

    One scope per thread: a session is not thread-safe.
    """
    owned = None
    factory = None
    if hasattr(registry_or_settings, "registerUtility"):
        factory = registry_or_settings.get("dbsession_factory")
    if factory is None:
        settings = (
            getattr(registry_or_settings, "settings", None) or registry_or_settings
        )
        state = build_from_settings(settings)
        factory, owned = state.factory, state.engines
    manager = transaction.TransactionManager(explicit=True)
    try:
        with manager:
            yield get_tm_session(factory, manager, request=request)
    finally:
        if owned is not None:
            owned.dispose()
