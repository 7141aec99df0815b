"""A pyramid_debugtoolbar panel: the routing of the request.

Enable it with::

    pyramid.includes = pyramid_debugtoolbar
    debugtoolbar.includes = pyramid_dbrouter.debugtoolbar

The "DB routing" panel lists each statement of the request with the engine
that answered it (URL with its password masked), the rule that chose that
engine (``router TenantRouter``, ``__bind_key__ of Album``, ``loaded from
archive``...), its duration, and how the request's transaction was
committed: one-phase, two-phase (with the prepared transaction ids and the
coordinator that holds the decision) or with a last resource.  It reads
what :mod:`pyramid_dbrouter.trace` records, which it includes in the
application.  This module imports pyramid_debugtoolbar: import it only
where the toolbar is installed.
"""

from html import escape

from pyramid_debugtoolbar.panels import DebugPanel

from .settings import mask_url
from .trace import request_trace, trace_sessions


def _e(value):
    return escape(str(value), quote=True)


class RoutingPanel(DebugPanel):
    """Each statement's engine and rule, and the commit protocol."""

    name = "dbrouter"
    title = "DB routing: which engine, by which rule, and the commit"
    nav_title = "DB routing"
    has_content = True

    def __init__(self, request):
        self.request = request
        self.trace = None
        self.urls = {}

    @property
    def nav_subtitle(self):
        if self.trace is None:
            return ""
        return str(len(self.trace.statements))

    def process_response(self, response):
        # after the transaction finished: the toolbar's tween wraps pyramid_tm
        self.trace = request_trace(self.request)
        if self.trace is None:
            return
        state = self.request.registry.get("dbrouter")
        for statement in self.trace.statements:
            if statement.engine not in self.urls:
                self.urls[statement.engine] = self._url(state, statement.engine)

    @staticmethod
    def _url(state, name):
        try:
            return mask_url(state.engines.get(name).url)
        except Exception:  # an engine closed since (a removed tenant)
            return ""

    def render_content(self, request):
        trace = self.trace
        if trace is None:
            return "<p>The request used no database session.</p>"
        rows = "".join(
            "<tr>"
            f"<td>{i}</td>"
            f"<td><code>{_e(s.engine)}</code><br>"
            '<small title="URL" style="word-break:break-all">'
            f"{_e(self.urls.get(s.engine, ''))}</small></td>"
            f"<td>{_e(s.rule)}</td>"
            f"<td>{s.duration_ms:.2f}&nbsp;ms</td>"
            f"<td>{'write' if s.writes else 'read'}</td>"
            f'<td><pre style="white-space:pre-wrap;margin:0">{_e(s.sql)}</pre></td>'
            "</tr>"
            for i, s in enumerate(trace.statements, 1)
        )
        commit = trace.commit
        if commit is None:
            ended = "rolled back: the request failed, or its transaction was aborted"
        else:
            ended = commit.summary
        details = ""
        if commit is not None and commit.prepared:
            details = (
                "<p>Prepared transaction ids: "
                + ", ".join(f"<code>{_e(x)}</code>" for x in commit.prepared)
                + "</p>"
            )
        return (
            f'<h4>Commit protocol</h4><p class="dbrouter-commit"><strong>'
            f"{_e(commit.protocol if commit else 'rolled back')}</strong>: "
            f"{_e(ended)}</p>{details}"
            f"<h4>Statements ({len(trace.statements)})</h4>"
            '<table class="table table-striped table-condensed dbrouter-statements">'
            '<thead><tr><th>#</th><th style="width:22%">engine</th>'
            '<th style="width:16%">rule</th><th>duration</th><th>kind</th>'
            f'<th style="width:48%">SQL</th></tr></thead><tbody>{rows}</tbody></table>'
        )


def includeme(config):
    """For ``debugtoolbar.includes``: the panel, and tracing in the
    application the toolbar wraps."""
    config.add_debugtoolbar_panel(RoutingPanel)
    config.inject_parent_action(_trace_parent)


def _trace_parent(config):
    # run once the application's configuration is committed: its session
    # factory is configured
    trace_sessions(config.registry)
