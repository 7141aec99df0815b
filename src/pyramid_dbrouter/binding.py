"""``session.using_bind(name)``: the same session, with one engine pinned.

A pin is a name on the session's pin stack, pushed for one call or for a
``with`` block; nothing is copied.  (A copied session would start a second
transaction of its own under zope.sqlalchemy and leak its connection.)
"""

from .routing import BIND_OPTION


class BoundSession:
    """A handle on a :class:`RoutingSession` with the engine *name* pinned.

    Every method acts on the same session and transaction; the handle is
    also a context manager that pins every operation inside the block.
    Blocks nest: the innermost pin wins.
    """

    __slots__ = ("session", "name")

    def __init__(self, session, name):
        self.session = session
        self.name = name

    def __repr__(self):
        return f"<BoundSession {self.name!r} of {self.session!r}>"

    def __enter__(self):
        self.session._dbr_pins.append(self.name)
        return self

    def __exit__(self, *exc_info):
        self.session._dbr_pins.pop()
        return False

    def _pinned(self, method, *args, **kw):
        # the pin pushed and popped inline: this runs for every tenant's
        # get() and statement (a ``with self:`` costs two more calls)
        pins = self.session._dbr_pins
        pins.append(self.name)
        try:
            return method(*args, **kw)
        finally:
            pins.pop()

    def execute(self, statement, *args, **kw):
        return self._pinned(self.session.execute, statement, *args, **kw)

    def scalars(self, statement, *args, **kw):
        return self._pinned(self.session.scalars, statement, *args, **kw)

    def scalar(self, statement, *args, **kw):
        return self._pinned(self.session.scalar, statement, *args, **kw)

    def get(self, entity, ident, **kw):
        return self._pinned(self.session.get, entity, ident, **kw)

    def get_one(self, entity, ident, **kw):
        return self._pinned(self.session.get_one, entity, ident, **kw)

    def add(self, instance):
        return self._pinned(self.session.add, instance)

    def add_all(self, instances):
        return self._pinned(self.session.add_all, instances)

    def delete(self, instance):
        return self._pinned(self.session.delete, instance)

    def merge(self, instance, **kw):
        return self._pinned(self.session.merge, instance, **kw)

    def flush(self, objects=None):
        return self._pinned(self.session.flush, objects)

    def query(self, *entities, **kw):
        # a Query runs later, when it is iterated: carry the pin with it
        query = self.session.query(*entities, **kw)
        return query.execution_options(**{BIND_OPTION: self.name})

    def connection(self, **kw):
        return self.session.connection(
            bind_arguments={"bind": self.session.engine(self.name, "using_bind")},
            **kw,
        )
