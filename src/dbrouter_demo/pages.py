"""The demo's HTML: one layout, and the footer that shows the routing."""

from html import escape

from pyramid.response import Response

from pyramid_dbrouter.trace import recent_commits, request_trace

STYLE = """
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
 background:#f6f6f4;margin:0}
header{background:#2d3a4a;color:#fff;padding:.7em 0}
header a{color:#fff;text-decoration:none;margin-right:1.4em}
header .brand{font-weight:600}
main,header div,footer{max-width:58rem;margin:0 auto;padding:0 1.2rem}
main{padding-top:1em;padding-bottom:1em}
h1{font-size:1.6em;margin:.4em 0 .6em}
h2{font-size:1.15em;margin:1.4em 0 .5em}
a{color:#1d5fa8}
.card{background:#fff;border:1px solid #e2e2dd;border-radius:6px;padding:1em 1.2em;
 margin:.8em 0}
form.inline{display:inline}
label{display:block;margin:.45em 0 .15em;font-weight:500}
input[type=text],input[type=date],input[type=search]{font:inherit;padding:.35em .5em;
 border:1px solid #bbb;border-radius:4px;width:22em;max-width:100%}
button{font:inherit;padding:.35em 1em;border-radius:4px;border:1px solid #1d5fa8;
 background:#1d5fa8;color:#fff;cursor:pointer;margin-top:.8em;display:block}
.error{background:#fdecea;border:1px solid #f5c2bd;color:#8a1c10;padding:.5em .8em;
 border-radius:4px}
.note{background:#eef6ee;border:1px solid #c6e2c6;padding:.5em .8em;border-radius:4px}
table.list{border-collapse:collapse;width:100%}
table.list td,table.list th{text-align:left;padding:.35em .5em;
 border-bottom:1px solid #eee}
.tag{display:inline-block;background:#eef1f6;border-radius:10px;padding:0 .6em;
 font-size:.85em;margin-right:.3em}
.muted{color:#777}
footer{font-size:12px;color:#666;padding-bottom:2em;border-top:1px solid #e2e2dd;
 margin-top:1em}
footer h3{font-size:12px;margin:.6em 0 .2em;font-weight:600;color:#555}
footer table{border-collapse:collapse;width:100%}
footer td,footer th{padding:.15em .4em;border-bottom:1px solid #e8e8e4;
 vertical-align:top;text-align:left}
footer code{font-size:11px;color:#555}
footer td.rule{white-space:nowrap}
.engine{font-family:ui-monospace,monospace;color:#2d3a4a;white-space:nowrap}
"""

NAV = (
    '<a class="brand" href="/">Photo albums</a>'
    '<a href="/albums/new">New album</a><a href="/search">Search</a>'
)


def e(value):
    return escape(str(value), quote=True)


def short_sql(sql, limit=110):
    one_line = " ".join(sql.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "\u2026"


def routing_footer(request):
    """Which engine answered each query of this request, and why; and how
    the last write committed."""
    trace = request_trace(request)
    rows = []
    for statement in trace.statements if trace is not None else ():
        rows.append(
            f'<tr><td class="engine">{e(statement.engine)}</td>'
            f'<td class="rule">{e(statement.rule)}</td>'
            f"<td><code>{e(short_sql(statement.sql))}</code></td></tr>"
        )
    queries = (
        '<table class="routing"><tr><th>engine</th><th>why</th><th>statement</th></tr>'
        + "".join(rows)
        + "</table>"
        if rows
        else "<p>no query</p>"
    )
    commits = recent_commits(request.registry)
    last = ""
    if commits:
        c = commits[0]
        last = (
            f'<h3>Last write</h3><p class="commit">{e(c.method)} {e(c.path)}: '
            f"<strong>{e(c.summary)}</strong></p>"
        )
    return (
        "<footer><h3>Routing of this page: which engine answered each query, "
        f"and why</h3>{queries}{last}</footer>"
    )


def page(request, title, body, status=200):
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} \u2013 pyramid_dbrouter demo</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<header><div>{NAV}</div></header>"
        f"<main><h1>{e(title)}</h1>{body}</main>"
        f"{routing_footer(request)}</body></html>"
    )
    return Response(html, status=status, charset="utf-8")
