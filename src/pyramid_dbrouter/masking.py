"""Passwords never shown: URLs and free text masked, in one place.

Every error message, log line and command output that can hold a database
URL goes through :func:`mask_url` (a URL) or :func:`mask_text` (a driver's
error message, which may quote a DSN).
"""

import re

from sqlalchemy.engine import make_url

#: query parameters that carry a password (libpq's ``password``,
#: ``sslpassword``...), which ``render_as_string(hide_password=True)`` leaves
#: in the clear
_SECRET_QUERY = re.compile(
    r"(?i)([?&][^=&#\s]*(?:pass|pwd|secret|token)[^=&#\s]*=)[^&#\s)'\"]*"
)
#: ``scheme://user:password@`` anywhere in a text
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")


def mask_url(url):
    """Return *url* as a string with its password replaced by ``***``."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:
        # not parseable as a URL: mask anything between ``:`` and ``@``
        shown = _URL_PASSWORD.sub(r"\1***@", str(url))
    return _SECRET_QUERY.sub(r"\1***", shown)


def mask_text(text):
    """*text* on one line, with the passwords of any URLs in it masked."""
    text = " ".join(str(text).split())
    return _SECRET_QUERY.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))
