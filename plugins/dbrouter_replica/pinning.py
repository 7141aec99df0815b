"""Reading from the primary: ``use_primary()``, and read-your-writes pins.

After a request that wrote, the response carries a cookie that sends the
same client's reads to the primaries for ``pin_seconds``: long enough for
every replica still in service to have replayed the write.  The cookie holds
an expiry time and an HMAC of it made with ``dbrouter.replica.secret``; it
names no database, so whatever a client sends can at most pin it to the
primary -- never choose a replica.  A forged, malformed or stale cookie pins
nothing, and a valid one pins for ``pin_seconds`` at most, whatever it says.

Outside requests (scripts, jobs, threads) ``use_primary()`` does the same for
a block or a function; it is held in a context variable, so it pins the
thread (or task) that entered it, and no other.
"""

import contextlib
import contextvars
import hashlib
import hmac
import math
import time

COOKIE = "dbrouter_pin"
#: per-request answer of :func:`pinned`, in the WSGI environ (a test seam too)
ENVIRON_KEY = "dbrouter_replica.pinned"
#: seconds a pin may claim beyond pin_seconds (clocks of several servers)
CLOCK_SKEW = 1

_PRIMARY = contextvars.ContextVar("dbrouter_replica.use_primary", default=False)


@contextlib.contextmanager
def use_primary():
    """Read from the primaries inside the block (or the decorated function)::

    with use_primary():
        balance = session.scalar(select(Account.balance).where(...))

    @use_primary()
    def nightly_report(registry): ...
    """
    token = _PRIMARY.set(True)
    try:
        yield
    finally:
        _PRIMARY.reset(token)


def primary_forced():
    """Whether the caller is inside ``use_primary()``."""
    return _PRIMARY.get()


class Pin:
    """Makes and checks the pin cookie's value: ``EXPIRES.HMAC``."""

    def __init__(self, secret, seconds, clock=time.time):
        self._key = secret.encode()
        self.seconds = seconds
        self.clock = clock

    def _sign(self, expires):
        return hmac.new(self._key, str(expires).encode(), hashlib.sha256).hexdigest()

    def make(self):
        expires = math.ceil(self.clock() + self.seconds)
        return f"{expires}.{self._sign(expires)}"

    def valid(self, value):
        """Whether *value* pins now: well-formed, signed by us, not expired,
        and not claiming more than ``pin_seconds``."""
        expires, _, signature = (value or "").partition(".")
        if not expires.isdigit() or len(expires) > 12:
            return False
        if not hmac.compare_digest(signature, self._sign(int(expires))):
            return False
        now = self.clock()
        return now < int(expires) <= now + self.seconds + CLOCK_SKEW


def pinned(request):
    """Whether *request* reads from the primaries because its client wrote
    less than ``pin_seconds`` ago (it carries a valid pin cookie)."""
    found = request.environ.get(ENVIRON_KEY)
    if found is None:
        from .replicas import get_replicas

        pin = get_replicas(request.registry).pin
        found = pin is not None and pin.valid(request.cookies.get(COOKIE))
        request.environ[ENVIRON_KEY] = found
    return found


def pin_tween_factory(handler, registry):
    """Under pyramid_tm: a response to a request that wrote pins its client.

    It runs before pyramid_tm commits, so that what the session will write
    at commit (changes not flushed yet) counts too; a request that failed is
    rolled back and pins nothing.
    """
    from .replicas import get_replicas

    replicas = get_replicas(registry)

    def pin_tween(request):
        response = handler(request)
        session = request.__dict__.get("dbsession")  # made by this request?
        if (
            session is not None
            and getattr(request, "exception", None) is None
            and replicas.router.session_writes(session)
        ):
            response.set_cookie(
                COOKIE,
                replicas.pin.make(),
                max_age=math.ceil(replicas.pin.seconds),
                path="/",
                secure=request.scheme == "https",
                httponly=True,
                samesite="Lax",
            )
        return response

    return pin_tween
