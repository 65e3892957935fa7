"""Daphne as chatsite runs it: `python -m chatsite.serve <daphne arguments>`.

The stock Daphne command line, with one difference: its access log never shows a secret.
Daphne prints each request's target as received, query string included, so a key sent as
`?key=...` would be written to the log. Here Daphne's access logger (the `action_logger`
its Server takes) is handed paths passed through `chatsite.redaction.redact` first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daphne.cli import CommandLineInterface  # first: it installs Twisted's asyncio reactor
from daphne.server import Server

from chatsite.redaction import redact

ActionLogger = Callable[[str, str, dict[str, Any]], None]


def redacting(action_logger: ActionLogger) -> ActionLogger:
    """An action logger that passes `action_logger` every detail with its path redacted."""

    def log(protocol: str, action: str, details: dict[str, Any]) -> None:
        if isinstance(details.get("path"), str):
            details = {**details, "path": redact(details["path"])}
        action_logger(protocol, action, details)

    return log


class RedactingServer(Server):
    """Daphne's server, logging requests through `redacting`."""

    def __init__(self, *args: Any, action_logger: ActionLogger | None = None, **kwargs: Any):
        logger = redacting(action_logger) if action_logger is not None else None
        super().__init__(*args, action_logger=logger, **kwargs)


class CommandLine(CommandLineInterface):
    """Daphne's command line with the redacting server."""

    server_class = RedactingServer


if __name__ == "__main__":
    CommandLine.entrypoint()
