"""Moving pictures out of their album into the archive, and finding them.

The one module to change when dbrouter_archive can take the album's own
engine (``tenant:KEY``) as its hot engine: today the plugin's hot engine is
one engine named in the settings, and every album is an engine of its own.
Until then this module does what the plugin does, for pictures:

* where both engines can take part in one commit (PostgreSQL, or one
  SQLite file with the others able to prepare), the copy and the delete are
  statements of the request's transaction, and the core commits them in two
  phases (or with the SQLite file as the last resource);
* where they cannot (two SQLite files), the copy is committed on the
  archive at once, as an idempotent upsert, then the delete commits with the
  request.  A crash between the two leaves the picture in both places;
  archiving it again finishes the move.  A picture is never lost, and never
  archived twice.
"""

from sqlalchemy import delete, insert, select

from pyramid_dbrouter import bind_of

from .models import ArchivedPic, Pic

ARCHIVE = "archive"
#: dialects that prepare a transaction (PREPARE TRANSACTION, XA)
TWO_PHASE_DIALECTS = frozenset({"postgresql", "mysql", "mariadb"})


def moves_atomically(session, album_engine):
    """Whether copy and delete commit together (at most one SQLite side)."""
    dialects = [session.engine(n).dialect.name for n in (album_engine, ARCHIVE)]
    return sum(d not in TWO_PHASE_DIALECTS for d in dialects) <= 1


def archive_pics(session, album, ids):
    """Move the pictures *ids* of album *album* (the request's) to the
    archive; return the pictures moved (those no longer in the album are
    skipped: a second submission moves nothing)."""
    pics = [p for p in (session.get(Pic, i) for i in sorted(set(ids))) if p]
    if not pics:
        return []
    rows = [
        {
            "album": album,
            "id": p.id,
            "title": p.title,
            "taken": p.taken,
            "tags": ",".join(t.name for t in p.tags),
        }
        for p in pics
    ]
    if moves_atomically(session, bind_of(pics[0])):
        for row in rows:
            session.merge(ArchivedPic(**row))
    else:
        keys = (ArchivedPic.album == album) & ArchivedPic.id.in_([p.id for p in pics])
        with session.engine(ARCHIVE).begin() as conn:
            conn.execute(delete(ArchivedPic).where(keys))
            conn.execute(insert(ArchivedPic), rows)
    for pic in pics:
        session.delete(pic)
    return pics


def find_pic(session, album, pic_id):
    """The picture *pic_id* of *album*: in the album, else in the archive."""
    return session.get(Pic, pic_id) or session.get(ArchivedPic, (album, pic_id))


def archived_pics(session, album):
    """The album's archived pictures, newest first."""
    statement = (
        select(ArchivedPic)
        .where(ArchivedPic.album == album)
        .order_by(ArchivedPic.taken.desc(), ArchivedPic.id.desc())
    )
    return session.scalars(statement).all()
