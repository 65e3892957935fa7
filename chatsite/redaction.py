"""Secrets kept out of log lines: API keys in query strings and anywhere else in the text.

Keys belong in `Authorization: Bearer <key>`, which nothing logs, but a client may put one
in the URL (`/api/tags?key=cs-...`), and the URL is what access logs print. `redact` hides
the values of query parameters whose names say they hold a secret (`key`, `api_key`,
`token`, `password`, ...), anything shaped like a key of this site (`cs-...`) or of an
OpenAI-style server (`sk-...`), the token of a shared link's path (`/s/<token>/`, which
opens the conversation to whoever has it), and bearer credentials. Used by the access log of
`chatsite.serve` and, as `RedactSecrets`, by the console log handler (settings.LOGGING).

Standard library only: the logging configuration imports it before Django is set up.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
# A query parameter whose name contains one of these holds a secret.
_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|auth|signature|session|credential|jwt", re.I)
_QUERY_PAIR = re.compile(r"(?P<lead>[?&;])(?P<name>[^&;=\s?#]+)=(?P<value>[^&;\s#\"']*)")
_KEY_SHAPED = re.compile(r"\b(?P<prefix>cs|sk)-[A-Za-z0-9_-]{8,}")
_SHARE_PATH = re.compile(r"(?P<lead>/s/)[A-Za-z0-9_-]{16,}")
_BEARER = re.compile(r"\b(?P<scheme>bearer)\s+[^\s\"',;]+", re.I)


def redact(text: str) -> str:
    """`text` (a request target, a log message) with every secret replaced by [redacted]."""
    if "=" in text:
        text = _QUERY_PAIR.sub(_redact_pair, text)
    if "/s/" in text:
        text = _SHARE_PATH.sub(rf"\g<lead>{REDACTED}", text)
    if "-" in text:
        text = _KEY_SHAPED.sub(rf"\g<prefix>-{REDACTED}", text)
    return _BEARER.sub(rf"\g<scheme> {REDACTED}", text)


def _redact_pair(match: re.Match[str]) -> str:
    if not _SECRET_NAME.search(unquote_plus(match["name"])):
        return match[0]
    return f"{match['lead']}{match['name']}={REDACTED}"


class RedactSecrets(logging.Filter):
    """A handler filter that redacts a record's message and traceback before they print."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
