"""The pages: albums, one album, its pictures and archive, and search."""

import re
from datetime import date

from pyramid.httpexceptions import HTTPFound, HTTPNotFound
from pyramid.view import view_config
from sqlalchemy import func, select

from dbrouter_tenant import (
    InvalidTenantKey,
    TenantExists,
    check_key,
    create_tenant,
    list_tenants,
)
from pyramid_dbrouter import bind_of, get_state

from .archive import (
    PREFIX,
    album_pics,
    archive_of,
    archive_pics,
    archived_pics,
    moves_atomically,
)
from .models import Album, Pic, PicTag, Tag, pic_tag
from .pages import e, page

PAGE_SIZE = 10
TAG = re.compile(r"^[a-z0-9][a-z0-9 _-]{0,39}$")


def _tags(tags):
    return "".join(f'<span class="tag">{e(t)}</span>' for t in tags)


def _error(message):
    return f'<p class="error">{e(message)}</p>' if message else ""


# -- albums -----------------------------------------------------------------------


@view_config(route_name="home", request_method="GET")
def home(request):
    catalog = request.dbsession.scalars(select(Album).order_by(Album.key)).all()
    folders = set(list_tenants(request.registry))
    rows = "".join(
        f'<tr><td><a href="{e(request.route_path("album", tenant=a.key))}">'
        f"{e(a.title)}</a></td><td><code>{e(a.key)}</code></td>"
        f'<td class="muted">{a.created:%Y-%m-%d %H:%M}</td></tr>'
        for a in catalog
        if a.key in folders
    )
    body = (
        '<p class="muted">Each album is a folder with a database of its own; '
        "the catalog of albums is on <code>default</code>, old pictures move to "
        "the album's archive, <code>archive:KEY</code>. The footer of every page "
        "tells which engine answered each query, and why.</p>"
        + (
            '<table class="list"><tr><th>album</th><th>folder</th><th>created</th>'
            f"</tr>{rows}</table>"
            if rows
            else "<p>No album yet.</p>"
        )
        + '<p><a href="/albums/new">Create an album</a></p>'
    )
    return page(request, "Photo albums", body)


def _album_form(values=None, error=None):
    values = values or {}
    return (
        f'{_error(error)}<form method="post" action="/albums/new" class="card">'
        '<label for="title">Title</label>'
        '<input type="text" id="title" name="title" '
        f'value="{e(values.get("title", ""))}" placeholder="Alps 2026">'
        '<label for="key">Folder name</label>'
        f'<input type="text" id="key" name="key" value="{e(values.get("key", ""))}"'
        ' placeholder="alps-2026">'
        '<p class="muted">Lower-case letters, digits, <code>-</code> and '
        "<code>_</code>: it names the album's folder.</p>"
        '<button type="submit">Create the album</button></form>'
    )


@view_config(route_name="new_album", request_method="GET")
def new_album_form(request):
    return page(request, "New album", _album_form())


@view_config(route_name="new_album", request_method="POST")
def new_album(request):
    title = request.POST.get("title", "").strip()[:200]
    key = request.POST.get("key", "").strip()
    error = None
    if not title or not key:
        error = "Give the album a title and a folder name."
    else:
        try:
            check_key(key)
        except InvalidTenantKey:
            error = f"{key!r} cannot name a folder: use a-z, 0-9, '-' and '_'."
    session = request.dbsession
    exists = f"There is already an album in folder {key!r}."
    if error is None and session.get(Album, key) is not None:
        error = exists
    if error is None:
        session.add(Album(key=key, title=title))
        try:
            create_tenant(request.registry, key)
            _archives(request).create(key)
        except TenantExists:
            error = exists
            request.tm.doom()  # the catalog's row is not committed
    if error is not None:
        return page(request, "New album", _album_form(request.POST, error), 400)
    return HTTPFound(request.route_path("album", tenant=key))


def _archives(request):
    return get_state(request.registry).engines.factories[PREFIX]


# -- one album ---------------------------------------------------------------------


def _album_title(request):
    album = request.dbsession.get(Album, request.tenant)
    return album.title if album is not None else request.tenant


def _pic_form(request, values=None, error=None):
    values = values or {}
    return (
        f'{_error(error)}<form method="post" class="card" '
        f'action="{e(request.route_path("add_pic", tenant=request.tenant))}">'
        '<label for="pic-title">Title</label>'
        f'<input type="text" id="pic-title" name="title" '
        f'value="{e(values.get("title", ""))}" placeholder="Sunrise on the ridge">'
        '<label for="taken">Taken on</label>'
        f'<input type="date" id="taken" name="taken" '
        f'value="{e(values.get("taken", date.today().isoformat()))}">'
        '<label for="tags">Tags (comma separated)</label>'
        f'<input type="text" id="tags" name="tags" value="{e(values.get("tags", ""))}"'
        ' placeholder="mountain, snow">'
        '<button type="submit">Add the picture</button></form>'
    )


def _album_page(request, values=None, error=None, status=200):
    key = request.tenant
    session = request.dbsession
    title = _album_title(request)
    pics = album_pics(session, key)
    tags = session.scalars(select(Tag.name).order_by(Tag.name)).all()
    rows = "".join(
        f'<tr><td><input type="checkbox" name="pic" value="{p.id}" '
        f'id="pic-{p.id}" aria-label="archive {e(p.title)}"></td>'
        f'<td><a href="{e(request.route_path("pic", tenant=key, id=p.id))}">'
        f"{e(p.title)}</a></td><td>{p.taken}</td><td>{_tags(t.name for t in p.tags)}"
        "</td></tr>"
        for p in pics
    )
    archive_url = request.route_path("archive", tenant=key)
    listing = (
        f'<form method="post" action="{e(archive_url)}">'
        '<table class="list"><tr><th></th><th>picture</th><th>taken</th>'
        f"<th>tags</th></tr>{rows}</table>"
        '<button type="submit">Archive the pictures ticked</button></form>'
        if rows
        else "<p>No picture in this album.</p>"
    )
    body = (
        f'<p class="muted">Folder <code>{e(key)}</code>, engine '
        f"<code>tenant:{e(key)}</code>, its archive <code>{e(archive_of(key))}"
        f'</code>. <a href="{e(archive_url)}">Archived pictures</a></p>'
        + (f'<p class="muted">Tags: {_tags(tags)}</p>' if tags else "")
        + f"<h2>Pictures</h2>{listing}"
        f"<h2>Add a picture</h2>{_pic_form(request, values, error)}"
    )
    return page(request, title, body, status)


@view_config(route_name="album", request_method="GET")
def album(request):
    return _album_page(request)


@view_config(route_name="add_pic", request_method="POST")
def add_pic(request):
    title = request.POST.get("title", "").strip()[:200]
    taken = request.POST.get("taken", "").strip()
    names = [t.strip().lower() for t in request.POST.get("tags", "").split(",")]
    names = sorted({t for t in names if t})
    error = None
    try:
        day = date.fromisoformat(taken)
    except ValueError:
        error = "Give the day the picture was taken (YYYY-MM-DD)."
    if not title:
        error = "Give the picture a title."
    bad = [t for t in names if not TAG.match(t)]
    if bad:
        error = f"Tags are up to 40 letters, digits, '-', '_' or spaces: {bad[0]!r}."
    if error is not None:
        return _album_page(request, request.POST, error, 400)
    session = request.dbsession
    known = {t.name: t for t in session.scalars(select(Tag).where(Tag.name.in_(names)))}
    links = [PicTag(tag=known.get(n) or Tag(name=n)) for n in names]
    session.add(Pic(title=title, taken=day, links=links))
    return HTTPFound(request.route_path("album", tenant=request.tenant))


@view_config(route_name="pic", request_method="GET")
def pic(request):
    try:
        pic_id = int(request.matchdict["id"])
    except ValueError:
        raise HTTPNotFound() from None
    # in the album, else in its archive: dbrouter_archive's get()
    found = request.dbsession.get(Pic, pic_id)
    if found is None:
        raise HTTPNotFound()
    engine = bind_of(found)
    where = (
        f"in the archive (engine <code>{e(engine)}</code>)"
        if engine == archive_of(request.tenant)
        else f"in the album (engine <code>{e(engine)}</code>)"
    )
    tags = [t.name for t in found.tags]
    album_url = request.route_path("album", tenant=request.tenant)
    body = (
        f'<div class="card"><p>Taken on {found.taken}</p><p>{_tags(tags)}</p>'
        f'<p class="muted">Picture #{found.id}, found {where}.</p></div>'
        f'<p><a href="{e(album_url)}">Back to {e(_album_title(request))}</a></p>'
    )
    return page(request, found.title, body)


# -- the archive -------------------------------------------------------------------


@view_config(route_name="archive", request_method="POST")
def archive(request):
    ids = []
    for value in request.POST.getall("pic"):
        try:
            ids.append(int(value))
        except ValueError:
            continue
    session = request.dbsession
    moved = archive_pics(session, request.tenant, ids)
    how = "one" if moves_atomically(session, request.tenant) else "two"
    location = request.route_path(
        "archive", tenant=request.tenant, _query={"moved": moved, "how": how}
    )
    return HTTPFound(location)


@view_config(route_name="archive", request_method="GET")
def archived(request):
    key = request.tenant
    pics = archived_pics(request.dbsession, key)
    moved = request.GET.get("moved")
    note = ""
    if moved is not None:
        how = (
            " Copy and delete were one transaction (see the last write below)."
            if request.GET.get("how") == "one"
            else " Two SQLite files cannot commit together: the copy was committed "
            f"on <code>{e(archive_of(key))}</code> first (idempotent), then the "
            "delete with the request."
        )
        note = (
            f'<p class="note">{e(moved)} picture(s) moved to the archive.{how}</p>'
            if moved != "0"
            else '<p class="note">Nothing to move: those pictures are no longer '
            "in the album (already archived?).</p>"
        )
    rows = "".join(
        f'<tr><td><a href="{e(request.route_path("pic", tenant=key, id=p.id))}">'
        f"{e(p.title)}</a></td><td>{p.taken}</td>"
        f"<td>{_tags(t.name for t in p.tags)}</td></tr>"
        for p in pics
    )
    body = (
        note
        + f'<p class="muted">Engine <code>{e(archive_of(key))}</code>.</p>'
        + (
            '<table class="list"><tr><th>picture</th><th>taken</th><th>tags</th>'
            f"</tr>{rows}</table>"
            if rows
            else "<p>No archived picture.</p>"
        )
        + f'<p><a href="{e(request.route_path("album", tenant=key))}">Back to the '
        "album</a></p>"
    )
    return page(request, f"Archive of {_album_title(request)}", body)


# -- search ------------------------------------------------------------------------


@view_config(route_name="search", request_method="GET")
def search(request):
    q = request.GET.get("q", "").strip()[:100]
    try:
        page_no = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page_no = 1
    form = (
        '<form method="get" action="/search" class="card">'
        '<label for="q">Pictures whose title or a tag contains</label>'
        f'<input type="search" id="q" name="q" value="{e(q)}" placeholder="snow">'
        ' <button type="submit">Search every album</button></form>'
    )
    results = ""
    if q and list_tenants(request.registry):
        pattern = f"%{q.lower()}%"
        tagged = select(pic_tag.c.pic_id).join(Tag).where(Tag.name.like(pattern))
        statement = (
            select(Pic)
            .where(func.lower(Pic.title).like(pattern) | Pic.id.in_(tagged))
            .order_by(Pic.taken.desc(), Pic.title, Pic.id)
            .limit(PAGE_SIZE + 1)
            .offset((page_no - 1) * PAGE_SIZE)
        )
        found = request.dbsession.scalars(statement).all()
        more, found = len(found) > PAGE_SIZE, found[:PAGE_SIZE]
        rows = "".join(_search_row(request, p) for p in found)
        pager = ""
        if page_no > 1:
            pager += f'<a href="/search?q={e(q)}&amp;page={page_no - 1}">previous</a> '
        if more:
            pager += f'<a href="/search?q={e(q)}&amp;page={page_no + 1}">next</a>'
        results = (
            f"<h2>Page {page_no}</h2>"
            + (
                '<table class="list"><tr><th>picture</th><th>album</th><th>taken</th>'
                f"<th>tags</th></tr>{rows}</table>"
                if rows
                else "<p>Nothing found.</p>"
            )
            + (f'<p class="pager">{pager}</p>' if pager else "")
        )
    elif q:
        results = "<p>No album yet.</p>"
    return page(request, "Search every album", form + results)


def _search_row(request, pic):
    key = bind_of(pic).partition(":")[2]
    return (
        f'<tr><td><a href="{e(request.route_path("pic", tenant=key, id=pic.id))}">'
        f"{e(pic.title)}</a></td><td><code>{e(key)}</code></td><td>{pic.taken}</td>"
        f"<td>{_tags(t.name for t in pic.tags)}</td></tr>"
    )
