"""Secrets are redacted from log lines: the rules, and the console handler of settings.LOGGING."""

from __future__ import annotations

import logging
import sys

import pytest

from chatsite.redaction import RedactSecrets, redact

KEY = "cs-" + "x" * 43


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"/api/tags?key={KEY}", "/api/tags?key=[redacted]"),
        ("/v1/models?api_key=abc&limit=5", "/v1/models?api_key=[redacted]&limit=5"),
        ("/x?a=1&token=t&b=2", "/x?a=1&token=[redacted]&b=2"),
        ("/x?API-KEY=t", "/x?API-KEY=[redacted]"),
        ("/x?access%5Ftoken=t", "/x?access%5Ftoken=[redacted]"),
        ("/x?password=p;session=s", "/x?password=[redacted];session=[redacted]"),
        ("/x?client_secret=s&auth=a", "/x?client_secret=[redacted]&auth=[redacted]"),
        (f"/x?q={KEY}", "/x?q=cs-[redacted]"),
        (f"/x/{KEY}/y", "/x/cs-[redacted]/y"),
        ("upstream said: sk-proj-abcdefghijkl", "upstream said: sk-[redacted]"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer [redacted]"),
        ("/api/chat?stream=true&model=llama3.2", "/api/chat?stream=true&model=llama3.2"),
        ("/x?monkey", "/x?monkey"),
        ("cs-short and task-list", "cs-short and task-list"),
        ("/s/Vx3_-k9aQ2pLm8ZrT0yWbN4cDeFgHiJkLmNoPqRsTuV/", "/s/[redacted]/"),
        ("/ws/s/Vx3_-k9aQ2pLm8ZrT0yWbN4cDeFgHiJkLmNoPqRsTuV/", "/ws/s/[redacted]/"),
        ("/s/Vx3_-k9aQ2pLm8ZrT0yWbN4cDeFgHiJkLmNoPqRsTuV/fork", "/s/[redacted]/fork"),
        ("/s/ab-sk-abcdefghijklmnopqrstuv/", "/s/[redacted]/"),
        ("/staff/s/12/", "/staff/s/12/"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def configured_console() -> logging.Handler:
    """The console handler settings.LOGGING installed on the root logger."""
    for handler in logging.getLogger().handlers:
        if any(isinstance(f, RedactSecrets) for f in handler.filters):
            return handler
    raise AssertionError("no root handler redacts secrets")


def test_the_console_handler_redacts_messages_and_tracebacks() -> None:
    handler = configured_console()
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.getLogger("django.request").makeRecord(
        "django.request", logging.WARNING, __file__, 1, "Bad request: %s", (f"/x?key={KEY}",),
        exc_info,
    )  # fmt: skip
    assert handler.filter(record)
    line = handler.format(record)
    assert KEY not in line and "xxxxxxxx" not in line
    assert "Bad request: /x?key=[redacted]" in line
    assert "ValueError: bad key cs-[redacted]" in line
