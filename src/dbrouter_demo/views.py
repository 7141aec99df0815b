"""One page: the albums of the hot database and of the archive."""

from html import escape

from pyramid.httpexceptions import HTTPFound, HTTPNotFound
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy import select

from .models import Album, Photo

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Albums - pyramid_dbrouter demo</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}
li{{margin:.3em 0}} form{{display:inline}}</style></head>
<body><h1>Photo albums</h1>
<form method="post" action="/"><input name="title" placeholder="New album" required>
<button>Add</button></form>
<h2>Hot (<code>default</code>)</h2><ul>{hot}</ul>
<h2>Archive (<code>archive</code>)</h2><ul>{archived}</ul>
</body></html>"""


def _item(album, archive_button):
    count = len(album.photos)
    button = ""
    if archive_button:
        button = (
            f'<form method="post" action="/albums/{album.id}/archive">'
            "<button>Archive</button></form>"
        )
    return f"<li>{escape(album.title)} ({count} photos) {button}</li>"


@view_config(route_name="home", request_method="GET")
def home(request):
    session = request.dbsession
    hot = session.scalars(select(Album).order_by(Album.id)).all()
    archived = (
        session.using_bind("archive").scalars(select(Album).order_by(Album.id)).all()
    )
    body = PAGE.format(
        hot="".join(_item(a, True) for a in hot) or "<li>none</li>",
        archived="".join(_item(a, False) for a in archived) or "<li>none</li>",
    )
    return Response(body)


@view_config(route_name="home", request_method="POST")
def add_album(request):
    title = request.POST.get("title", "").strip()[:200]
    if title:
        album = Album(title=title, photos=[Photo(caption="cover")])
        request.dbsession.add(album)
    return HTTPFound(request.route_url("home"))


@view_config(route_name="archive", request_method="POST")
def archive(request):
    session = request.dbsession
    album = session.get(Album, int(request.matchdict["id"]))
    if album is None:
        raise HTTPNotFound()
    # moving is a write to both SQLite databases: done as two requests' worth
    # of work would not be atomic, so the demo copies only (see the archive
    # plugin for the atomic move)
    copy = Album(
        title=album.title, photos=[Photo(caption=p.caption) for p in album.photos]
    )
    session.using_bind("archive").add(copy)
    return HTTPFound(request.route_url("home"))
