"""Typed engine errors, each with a message a person can act on."""

from __future__ import annotations


class LLMError(Exception):
    """Base of every engine error.

    `message` is what the person who asked sees (escape it in HTML): plain words, never the
    model server's address nor the HTTP library's text. `detail` is for the log: what
    exactly failed, in the transport's words ("" when the message says it all).
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def reword(self, message: str) -> None:
        """Replace the message (the detail stays)."""
        self.message = message
        self.args = (message,)


class ModelNotFound(LLMError):
    """No enabled connection serves this model name."""

    def __init__(self, model: str) -> None:
        super().__init__(f"model '{model}' not found")
        self.model = model


UNREACHABLE = "the model server could not be reached"


class UpstreamUnavailable(LLMError):
    """The upstream could not be reached or did not answer in time.

    `url` and `reason` (the transport's words) are for the log; the message says what
    happened in plain words.
    """

    def __init__(self, url: str, reason: str, message: str = UNREACHABLE) -> None:
        super().__init__(message, detail=reason)
        self.url = url
        self.reason = reason


class UpstreamError(LLMError):
    """The upstream answered with an error (`status` is its HTTP status).

    An in-band error before any text was produced also lands here, with status 500 (the
    status Ollama itself would have sent had it failed before its first byte).
    """

    def __init__(self, status: int, message: str, detail: str = "") -> None:
        super().__init__(message, detail)
        self.status = status


class UpstreamInterrupted(LLMError):
    """The stream broke after it started; `partial` is the text produced until then.

    `reason` is in plain words (or the upstream's own message); `detail`, for the log, is
    the transport's.
    """

    def __init__(self, partial: str, reason: str, detail: str = "") -> None:
        super().__init__(f"the model's reply was interrupted: {reason}", detail)
        self.partial = partial
        self.reason = reason


class InvalidRequest(LLMError):
    """A request that cannot be translated or sent (`param` names the offending field)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
